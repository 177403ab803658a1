//! chatrex-llm
