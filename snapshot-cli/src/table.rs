//! Aligned text tables (one column may shrink, with `…`, to fit the width)
//! and Markdown tables.

use crate::output::Style;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub header: String,
    pub align: Align,
    /// The column that is truncated when the table is too wide.
    pub flex: bool,
}

impl Column {
    pub fn left(header: &str) -> Column {
        Column {
            header: header.into(),
            align: Align::Left,
            flex: false,
        }
    }
    pub fn right(header: &str) -> Column {
        Column {
            header: header.into(),
            align: Align::Right,
            flex: false,
        }
    }
    pub fn flex(header: &str) -> Column {
        Column {
            header: header.into(),
            align: Align::Left,
            flex: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            style: Style::Plain,
        }
    }
    pub fn styled(text: impl Into<String>, style: Style) -> Cell {
        Cell {
            text: text.into(),
            style,
        }
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::new(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::new(s)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

/// Display width of a string (the names and units here are one column per char).
pub fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cuts `s` to `max` columns, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

const GAP: &str = "  ";
const MIN_FLEX: usize = 16;

impl Table {
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    fn natural_widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.columns.iter().map(|c| width(&c.header)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(w.len()) {
                w[i] = w[i].max(width(&cell.text));
            }
        }
        w
    }

    /// Aligned text. With `max_width`, the flex column shrinks (to no less
    /// than 16 columns) so each line fits.
    pub fn render(&self, max_width: Option<usize>, color: bool) -> String {
        let mut widths = self.natural_widths();
        if let (Some(max), Some(flex)) = (max_width, self.columns.iter().position(|c| c.flex)) {
            let total: usize =
                widths.iter().sum::<usize>() + GAP.len() * widths.len().saturating_sub(1);
            if total > max {
                let others = total - widths[flex];
                widths[flex] = max.saturating_sub(others).max(MIN_FLEX).min(widths[flex]);
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self
            .columns
            .iter()
            .map(|c| Cell::styled(c.header.clone(), Style::Bold))
            .collect();
        self.render_row(&mut out, &header, &widths, color);
        for row in &self.rows {
            self.render_row(&mut out, row, &widths, color);
        }
        out
    }

    fn render_row(&self, out: &mut String, row: &[Cell], widths: &[usize], color: bool) {
        let mut line = String::new();
        let last = self.columns.len().saturating_sub(1);
        for (i, col) in self.columns.iter().enumerate() {
            let empty = Cell::default();
            let cell = row.get(i).unwrap_or(&empty);
            let text = truncate(&cell.text, widths[i]);
            let pad = widths[i].saturating_sub(width(&text));
            if i > 0 {
                line.push_str(GAP);
            }
            match col.align {
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&cell.style.paint(&text, color));
                }
                Align::Left => {
                    line.push_str(&cell.style.paint(&text, color));
                    if i != last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }

    /// A GitHub-flavoured Markdown table (no truncation, no colour).
    pub fn render_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("|");
        for c in &self.columns {
            out.push_str(&format!(" {} |", esc(&c.header)));
        }
        out.push_str("\n|");
        for c in &self.columns {
            out.push_str(match c.align {
                Align::Left => " :--- |",
                Align::Right => " ---: |",
            });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for (i, col) in self.columns.iter().enumerate() {
                let text = row.get(i).map(|c| c.text.as_str()).unwrap_or_default();
                // Names (C++ templates) go in code spans so `<…>` is not read as HTML.
                let cell = if col.flex && !text.is_empty() {
                    let fence = if text.contains('`') { "``" } else { "`" };
                    format!("{fence}{}{fence}", esc(text))
                } else {
                    esc(text)
                };
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(vec![Column::right("Count"), Column::flex("Name")]);
        t.push(vec![
            "12".into(),
            "a_rather_long_function_name_for_the_table".into(),
        ]);
        t.push(vec!["3".into(), "b|c".into()]);
        t
    }

    #[test]
    fn aligns_and_truncates() {
        let text = sample().render(Some(30), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Count  Name");
        assert!(lines[1].starts_with("   12  a_rather"), "{text}");
        assert!(lines[1].ends_with('…'), "{text}");
        assert!(lines.iter().all(|l| width(l) <= 30), "{text}");
        let wide = sample().render(None, false);
        assert!(wide.contains("for_the_table"));
    }

    #[test]
    fn markdown_escapes_pipes() {
        let md = sample().render_markdown();
        assert!(
            md.starts_with("| Count | Name |\n| ---: | :--- |\n"),
            "{md}"
        );
        assert!(md.contains("`b\\|c`"), "{md}");
    }

    #[test]
    fn colour_only_when_asked() {
        let t = sample();
        assert!(!t.render(None, false).contains('\x1b'));
        assert!(t.render(None, true).contains("\x1b[1m"));
    }
}
