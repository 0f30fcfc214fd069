//! Text that goes back to a client: one line (a header value cannot hold CR or LF, and async-nats panics
//! on one), and short (an error that echoes a 600 KB field name must not make the reply too big to send).

/// The longest error message a reply carries, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// `text` on one line, control characters replaced by spaces, cut to [`MAX_MESSAGE_LEN`] bytes at a
/// character boundary with a note of how much was cut.
pub fn clip(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_LEN + 32));
    for (i, c) in text.char_indices() {
        if out.len() + c.len_utf8() > MAX_MESSAGE_LEN {
            out.push_str(&format!("... ({} more bytes)", text.len() - i));
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_controls_become_spaces() {
        assert_eq!(clip("a\nb\r\nc\td\0"), "a b  c d ");
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let clipped = clip(&long);
        assert!(clipped.len() < MAX_MESSAGE_LEN + 32, "{}", clipped.len());
        assert!(clipped.ends_with(&format!("... ({} more bytes)", long.len() - MAX_MESSAGE_LEN)), "{clipped}");
        assert_eq!(clip("short"), "short");
    }
}
