use std::io::{self, Write};

/// Rows printed as left-aligned columns two spaces apart, sized to the widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(titles: &[&str]) -> Self {
        Table { rows: vec![titles.iter().map(|title| title.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let padding = widths[column].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.push_str(&" ".repeat(padding + 2));
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

/// `1,2,3`, or `-` when empty.
pub fn id_list(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The number, or `-` when absent.
pub fn optional_number(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut table = Table::new(&["NAME", "PARTITIONS"]);
        table.row(vec!["orders-long-name".to_string(), "3".to_string()]);
        table.row(vec!["a".to_string(), "12".to_string()]);
        let mut out = Vec::new();
        table.write(&mut out).expect("write to a Vec");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text, "NAME              PARTITIONS\norders-long-name  3\na                 12\n");
    }
}
