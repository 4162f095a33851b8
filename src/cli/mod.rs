//! The command lines of the binaries in `bin/`, and the client's command
//! language.
//!
//! - [`args`]: the argument parsing toolkit all four binaries share.
//! - [`server_args`]: the `table-server` command line.
//! - [`client_args`]: the `table-client` command line.
//! - [`words`]: splitting a shell line into words, with quotes and escapes.
//! - [`command`]: the client's command language (shell and one-shot) and its execution.
//! - [`operations`]: its cas, incr, mget, mset, exists and getkeys with a prefix.
//! - [`expiry`]: its expire, ttl, persist and put with a time to live.
//! - [`watch`]: its watch of a key or prefix.
//! - [`shards`]: its `shards` and `shards init`, the shard map's admin commands.
//! - [`migrate`]: its `migrate`, moving slots between chains online.
//! - [`output`]: results as text or JSON lines.
//! - [`member_table`]: how `members` shows a chain.
//! - [`shell`]: the interactive client shell.
//! - [`shell_editing`]: its Tab completion and Ctrl-C key.
//! - [`requests`]: its requests on a thread of their own, cancelled by Ctrl-C.

pub mod args;
pub mod client_args;
pub mod command;
pub mod expiry;
pub mod member_table;
pub mod migrate;
pub mod operations;
pub mod output;
pub mod requests;
pub mod server_args;
pub mod shards;
pub mod shell;
pub mod shell_editing;
pub mod watch;
pub mod words;
