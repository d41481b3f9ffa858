/// The server flag shared by every client command; the `cairn` binary flattens it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArg {
    /// Address of any Cairn node: host:port or http://host:port.
    #[arg(long, env = "CAIRN_SERVER", default_value = "127.0.0.1:7070", global = true)]
    pub server: String,
}
