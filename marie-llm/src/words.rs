//! Splitting text into word chunks.

/// Splits `text` into chunks of one word each, every chunk keeping the whitespace that
/// follows its word (leading whitespace stays with the first word), so that the chunks
/// joined give `text` back exactly.
pub(crate) fn word_chunks(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut seen_word = false;
    let mut after_space = false;
    for ch in text.chars() {
        if ch.is_whitespace() {
            after_space = true;
        } else {
            if after_space && seen_word {
                chunks.push(std::mem::take(&mut current));
            }
            after_space = false;
            seen_word = true;
        }
        current.push(ch);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::word_chunks;

    #[test]
    fn chunks_join_back_to_the_text() {
        for text in [
            "hello world",
            "  lead and trail  ",
            "one",
            "a\n\nb\tc",
            "",
            "héllo wörld ✓",
        ] {
            let chunks = word_chunks(text);
            assert_eq!(chunks.concat(), text);
            assert!(chunks.iter().all(|c| !c.is_empty()));
        }
        assert_eq!(word_chunks("hello big world"), ["hello ", "big ", "world"]);
    }
}
