//! Commands written as a POSIX shell reads them back: the ones messages suggest
//! (resume a run, evaluate its weights) and the one `bench` records with its figures.

/// `word` as a POSIX shell reads it back.
pub fn word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `words` as one command line.
pub fn line<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| word(w.as_ref())).collect::<Vec<_>>().join(" ")
}

/// This program as the user ran it, for the commands a message suggests.
pub fn program() -> String {
    std::env::args_os().next().map_or("gpu-cnn".into(), |p| p.to_string_lossy().into_owned())
}

/// The command line this process was started with.
pub fn this_command() -> String {
    line(&std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>())
}

#[cfg(test)]
/// `line` split into words as a POSIX shell splits it: single and double quotes,
/// backslash escapes, and `#` starting a comment at the start of a word.
pub fn split(line: &str) -> Vec<String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&q| q != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reads_words_as_a_shell_does() {
        let words = split(r#"gpu-cnn train --arch "c8k3 relu, fc10" --out 'a b' c\ d   # a comment"#);
        assert_eq!(words, ["gpu-cnn", "train", "--arch", "c8k3 relu, fc10", "--out", "a b", "c d"]);
    }

    #[test]
    fn a_written_word_reads_back_whole() {
        for w in ["plain/path.png", "", "two words", "it's", "$HOME", "a\\b", "c8k3 relu, fc10"] {
            assert_eq!(split(&line(&["gpu-cnn", w])), ["gpu-cnn", w], "{w:?}");
        }
    }
}
