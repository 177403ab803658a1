//! chatrex-core
