//! Containerfiles (Dockerfiles): the syntax as BuildKit parses it (`parse`: directives, line
//! continuations, comments, heredocs, flags, the exec and shell forms, each instruction's
//! arguments) and word expansion as BuildKit's shell lexer does it (`shell`).

pub mod parse;
pub mod shell;
