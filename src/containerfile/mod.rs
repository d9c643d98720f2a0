//! Containerfiles (Dockerfiles): the syntax as BuildKit parses it (`parse`: directives, line
//! continuations, comments, heredocs, flags, the exec and shell forms, each instruction's
//! arguments), word expansion as BuildKit's shell lexer does it (`shell`), and what a file
//! means for one target platform (`plan`: build args, ARG scoping, stages and the ones needed).

pub mod ignore;
pub mod parse;
pub mod plan;
pub mod shell;
