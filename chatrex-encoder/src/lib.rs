//! chatrex-encoder
