//! chatrex facade
