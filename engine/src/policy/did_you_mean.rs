//! "Did you mean" suggestions for typos, by edit distance.

/// Levenshtein distance over characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be a plausible typo
/// (at most a third of the longer word's length, and at least one edit allowed).
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let (best, d) = candidates
        .into_iter()
        .map(|c| (c, distance(word, c)))
        .min_by_key(|(_, d)| *d)?;
    let limit = (word.chars().count().max(best.chars().count()) / 3).max(1);
    (d <= limit).then_some(best)
}

/// Like [`closest`], but always returns the nearest candidate (for messages that must name one).
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates.into_iter().min_by_key(|c| distance(word, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("before-hook-creations", "before-hook-creation"), 1);
    }

    #[test]
    fn suggestions() {
        let events = ["pre-install", "post-install", "pre-upgrade"];
        assert_eq!(closest("pre-instal", events), Some("pre-install"));
        assert_eq!(closest("preinstall", events), Some("pre-install"));
        assert_eq!(closest("zzzzzzzz", events), None);
        assert!(nearest("zzzzzzzz", events).is_some());
    }
}
