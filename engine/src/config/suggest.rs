//! "Did you mean": the known name closest to a misspelt one, if any is close enough to be a typo.

/// The candidate most like `name` (Jaro-Winkler similarity of at least 0.8), if any.
pub fn did_you_mean<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let known = vec!["qty".to_string(), "items".to_string(), "owner".to_string()];
        assert_eq!(did_you_mean("qtty", &known), Some("qty"));
        assert_eq!(did_you_mean("itemz", &known), Some("items"));
        assert_eq!(did_you_mean("balance", &known), None);
    }
}
