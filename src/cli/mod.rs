//! The command lines of the binaries in `bin/`, and the client's command
//! language.
//!
//! - [`args`]: the argument parsing toolkit all four binaries share.
//! - [`server_args`]: the `table-server` command line.
//! - [`client_args`]: the `table-client` command line.
//! - [`command`]: the client's command language (shell and one-shot) and its output.
//! - [`shell`]: the interactive client shell.

pub mod args;
pub mod client_args;
pub mod command;
pub mod server_args;
pub mod shell;
