//! Plain-text tables as the CLI prints them: columns padded to their widest cell, three spaces
//! apart, no trailing blanks.

/// One line per row, the header first.
pub fn lines<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            l.push_str(&format!("{cell:<w$}   "));
        }
        l.trim_end().to_owned()
    };
    std::iter::once(line(header))
        .chain(rows.iter().map(|r| line(r.each_ref().map(String::as_str))))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_without_trailing_blanks() {
        let rows = [
            ["a".to_owned(), "long cell".to_owned(), "x".to_owned()],
            ["wider".to_owned(), "b".to_owned(), String::new()],
        ];
        assert_eq!(
            super::lines(["H1", "H2", "H3"], &rows),
            [
                "H1      H2          H3",
                "a       long cell   x",
                "wider   b",
            ]
        );
    }
}
