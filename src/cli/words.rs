//! Splitting a shell line into words the way redis-cli does: words are
//! separated by blanks; `"..."` is one word with the escapes `\"`, `\\`,
//! `\n`, `\r`, `\t` and `\xHH` (any byte); `'...'` is one word taken
//! literally. A quoted word may be empty (`""`) and keeps its blanks. Bare
//! words are taken as they are, backslashes included.

/// One word of a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word's bytes, quotes removed and escapes decoded.
    pub bytes: Vec<u8>,
    /// Where it ends in the line (byte index after it, closing quote included).
    pub end: usize,
    /// It was written in quotes.
    pub quoted: bool,
}

/// The blanks between words.
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// The next word of `line` at or after byte `from`; `None` when only blanks
/// are left. Errors name what is wrong (an unclosed quote, a quote glued to
/// the next word, a bad escape).
pub fn next_word(line: &str, from: usize) -> Result<Option<Word>, String> {
    let bytes = line.as_bytes();
    let Some(start) = (from..bytes.len()).find(|&index| !is_blank(bytes[index])) else {
        return Ok(None);
    };
    let (word, end) = match bytes[start] {
        b'"' => double_quoted(bytes, start + 1)?,
        b'\'' => single_quoted(bytes, start + 1)?,
        _ => {
            let end = (start..bytes.len()).find(|&index| is_blank(bytes[index])).unwrap_or(bytes.len());
            return Ok(Some(Word { bytes: bytes[start..end].to_vec(), end, quoted: false }));
        }
    };
    if end < bytes.len() && !is_blank(bytes[end]) {
        return Err("a closing quote must be followed by a space or the end of the line".into());
    }
    Ok(Some(Word { bytes: word, end, quoted: true }))
}

/// Every word of `line`.
pub fn split(line: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut from = 0;
    while let Some(word) = next_word(line, from)? {
        from = word.end;
        words.push(word);
    }
    Ok(words)
}

/// The inside of `"..."` from `from` (after the opening quote): the decoded
/// bytes and the index after the closing quote.
fn double_quoted(bytes: &[u8], from: usize) -> Result<(Vec<u8>, usize), String> {
    let mut word = Vec::new();
    let mut index = from;
    loop {
        match bytes.get(index) {
            None => return Err("unbalanced quotes: a \" is not closed".into()),
            Some(b'"') => return Ok((word, index + 1)),
            Some(b'\\') => {
                let escaped = bytes.get(index + 1).ok_or("unbalanced quotes: a \" is not closed")?;
                let decoded = match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'"' | b'\\' | b'\'' => *escaped,
                    b'x' => {
                        let hex =
                            bytes.get(index + 2..index + 4).and_then(|hex| std::str::from_utf8(hex).ok());
                        let byte = hex.and_then(|hex| u8::from_str_radix(hex, 16).ok());
                        let byte = byte.ok_or("\\x must be followed by two hexadecimal digits")?;
                        word.push(byte);
                        index += 4;
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "unknown escape \\{} (use \\\\ for a backslash)",
                            *other as char
                        ));
                    }
                };
                word.push(decoded);
                index += 2;
            }
            Some(byte) => {
                word.push(*byte);
                index += 1;
            }
        }
    }
}

/// The inside of `'...'`, taken literally.
fn single_quoted(bytes: &[u8], from: usize) -> Result<(Vec<u8>, usize), String> {
    let length =
        bytes[from..].iter().position(|&byte| byte == b'\'').ok_or("unbalanced quotes: a ' is not closed")?;
    Ok((bytes[from..from + length].to_vec(), from + length + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<u8>> {
        split(line).expect("a valid line").into_iter().map(|word| word.bytes).collect()
    }

    #[test]
    fn bare_words_split_on_blanks() {
        assert_eq!(words("  get \t key  "), vec![b"get".to_vec(), b"key".to_vec()]);
        assert_eq!(words("a\\nb"), vec![b"a\\nb".to_vec()], "no escapes outside quotes");
        assert!(words("   ").is_empty());
    }

    #[test]
    fn double_quotes_decode_escapes_and_keep_blanks() {
        assert_eq!(words(r#"get "a b""#), vec![b"get".to_vec(), b"a b".to_vec()]);
        assert_eq!(words(r#""  lead""#), vec![b"  lead".to_vec()]);
        assert_eq!(words(r#""""#), vec![Vec::<u8>::new()]);
        assert_eq!(words(r#""q\"\\\n\t\r\x41\xff""#), vec![b"q\"\\\n\t\rA\xff".to_vec()]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(words(r"'a \n b'"), vec![b"a \\n b".to_vec()]);
        assert_eq!(words("''"), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn word_ends_are_positions_in_the_line() {
        let line = r#"put "k" v"#;
        let first = next_word(line, 0).unwrap().unwrap();
        assert_eq!((first.end, first.quoted), (3, false));
        let second = next_word(line, first.end).unwrap().unwrap();
        assert_eq!((second.bytes.as_slice(), second.end, second.quoted), (&b"k"[..], 7, true));
        assert_eq!(next_word(line, 9).unwrap(), None);
    }

    #[test]
    fn bad_quoting_is_an_error() {
        for (line, message) in [
            (r#"get "open"#, "unbalanced quotes"),
            ("get 'open", "unbalanced quotes"),
            (r#"get "a"b"#, "closing quote"),
            (r#"get "\x4""#, "two hexadecimal digits"),
            (r#"get "\q""#, "unknown escape \\q"),
            (r#"get "\"#, "unbalanced quotes"),
        ] {
            let error = split(line).unwrap_err();
            assert!(error.contains(message), "{line}: {error}");
        }
    }
}
