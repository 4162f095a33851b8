//! `--address-file`: the address a server listens on, for whoever started
//! it on port 0 (scripts, tests, `table-check`), so none of them has to find
//! it in the log. Written to a temporary name and renamed, so a reader that
//! polls for the file never sees half an address.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// Writes `address` and a newline to `path`, whole.
pub fn write(path: &Path, address: SocketAddr) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    fs::write(&temporary, format!("{address}\n"))?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_the_address_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("chaintable-address-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("address");
        write(&path, "127.0.0.1:4567".parse().unwrap()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "127.0.0.1:4567\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
