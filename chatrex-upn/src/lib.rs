//! chatrex-upn
