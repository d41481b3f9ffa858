/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// JSON, for scripts.
    Json,
    /// Aligned columns, for people.
    #[default]
    Table,
}
