//! A TCP proxy that delivers every byte a fixed time after it arrived, in both directions:
//! a slow but healthy link in front of a node. This machine's `tc` has no netem, so latency
//! between nodes on loopback comes from here: a node's peers (and clients) know it by the
//! proxy's address, and the proxy forwards to the address the node listens on.
//!
//! Each direction of a connection is a reader that stamps what it read and a writer that
//! writes it out once its time has come, so bytes keep their order and throughput is not
//! limited by the delay. At most `CHUNKS_IN_FLIGHT` reads wait per direction: a sender
//! faster than the receiver is held back, as by a real link's buffers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 1024;

pub struct LatencyProxy {
    /// Where to connect instead of the node.
    pub address: String,
    accept: JoinHandle<()>,
}

impl LatencyProxy {
    /// A proxy on a free loopback port in front of `upstream`, delaying each direction by
    /// `delay`.
    pub async fn start(upstream: String, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address").to_string();
        let accept = tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    // The node may be down: then the connection just closes, as it would.
                    if let Ok(upstream) = TcpStream::connect(&upstream).await {
                        relay(downstream, upstream, delay).await;
                    }
                });
            }
        });
        LatencyProxy { address, accept }
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(downstream: TcpStream, upstream: TcpStream, delay: Duration) {
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    tokio::join!(one_way(down_read, up_write, delay), one_way(up_read, down_write, delay));
}

/// Copies `from` into `to`, each chunk `delay` after it was read; closes `to` after the last.
async fn one_way(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let reader = async move {
        let mut buffer = vec![0; CHUNK_BYTES];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            if chunks.send((Instant::now() + delay, buffer[..read].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
