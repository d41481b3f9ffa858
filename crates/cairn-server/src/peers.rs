//! Node-to-node connections, built in one place.
//!
//! Every call one node makes to another (Raft messages on the shared stream and as unary
//! calls, forwarded client requests, a join) takes its channel from `Peers`: one channel,
//! one HTTP/2 connection, per peer address, shared by all of them. A peer's failure is then
//! found once, and one reconnect serves every kind of traffic.
//!
//! A peer that is cut off or paused (a network partition, SIGSTOP, a frozen VM) does not
//! close its connections: a paused process's kernel even keeps acknowledging. Without help, a
//! call on such a connection waits until TCP gives up, and after a partition heals a
//! connection waits for its next retransmission, which backs off to two minutes. So every
//! peer connection
//! - sends an HTTP/2 ping when nothing arrived for `keepalive_interval`, idle or not, and
//!   closes the connection when the ping is not answered within `keepalive_timeout`: every
//!   call on it fails at once (`UNAVAILABLE`), and the next call connects again;
//! - has TCP keepalive on, for what the HTTP/2 pings cannot see (a half-open socket);
//! - gives up a connection attempt after `connect_timeout`, so that once a partition heals
//!   the next attempt, not a SYN retransmission seconds later, gets through;
//! - leaves from the address the node listens on, when that names one (so that peers and
//!   firewalls see the node's own address).
//!
//! Every forwarded request carries a deadline (`forward_timeout`, as gRPC's
//! `grpc-timeout`, which both ends enforce). Raft calls are bounded by the Raft layer
//! (`cairn_raft::network`: openraft's time to live per message, a timeout per snapshot
//! chunk). The times follow the failure detection settings: a peer that does not answer a
//! ping within about twice the longest election timeout would have lost its leaderships
//! anyway.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// The shortest ping timeout, whatever the election timeouts: a loaded node may take this
/// long to answer a ping without being down.
const KEEPALIVE_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// The shortest connect timeout: Linux retransmits a lost SYN after one second.
const CONNECT_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// TCP keepalive probes sent before an unanswered socket is closed.
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// How node-to-node connections are made and watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// Silence on a connection after which it is pinged.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    /// The deadline of a forwarded request: the longest the receiving node waits for a
    /// leader itself, plus the time to find a dead peer.
    pub forward_timeout: Duration,
    /// Where connections leave from (`None`: wherever the routing table says).
    pub local_address: Option<IpAddr>,
}

impl PeerSettings {
    /// Settings that follow the failure detection settings: `election_timeout_min` (a node
    /// not heard from this long counts as down) and `election_timeout_max`. `leader_wait`
    /// is how long a node waits for a group's leader before it answers `UNAVAILABLE`.
    pub fn from_failure_detection(
        election_timeout_min: Duration,
        election_timeout_max: Duration,
        leader_wait: Duration,
        listen: IpAddr,
    ) -> PeerSettings {
        let keepalive_timeout = (election_timeout_max * 2).max(KEEPALIVE_TIMEOUT_MIN);
        PeerSettings {
            keepalive_interval: election_timeout_min,
            keepalive_timeout,
            connect_timeout: election_timeout_max.max(CONNECT_TIMEOUT_MIN),
            forward_timeout: leader_wait + election_timeout_min + keepalive_timeout,
            local_address: (!listen.is_unspecified()).then_some(listen),
        }
    }

    /// The longest a call on a connection to a peer that stopped answering waits before
    /// the connection is closed under it.
    pub fn dead_peer_detection(&self) -> Duration {
        self.keepalive_interval + self.keepalive_timeout
    }

    /// The endpoint of the peer at `address` (`host:port`).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, PeerError> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|err| PeerError::BadAddress { address: address.to_owned(), detail: err.to_string() })?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(true)
            // The kernel counts TCP keepalive times in whole seconds (0 is refused).
            .tcp_keepalive(Some(whole_seconds(self.dead_peer_detection())))
            .tcp_keepalive_interval(Some(whole_seconds(self.keepalive_interval)))
            .tcp_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES))
            .local_address(self.local_address))
    }
}

/// `duration` rounded up to whole seconds, at least one.
fn whole_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(Duration::from_secs(1))
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad node address {address}: {detail}")]
    BadAddress { address: String, detail: String },
}

/// One reused channel per peer address. A node's address may change (a restart on a new
/// port): the old entry stays, one idle channel per address the cluster ever used.
#[derive(Debug)]
pub struct Peers {
    settings: PeerSettings,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub fn new(settings: PeerSettings) -> Peers {
        Peers { settings, channels: Mutex::new(HashMap::new()) }
    }

    pub fn settings(&self) -> &PeerSettings {
        &self.settings
    }

    /// The channel to `address`, connected on first use and again after each failure.
    pub fn channel(&self, address: &str) -> Result<Channel, PeerError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = self.settings.endpoint(address)?.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_failure_detection() {
        let ms = Duration::from_millis;
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let defaults = PeerSettings::from_failure_detection(ms(600), ms(900), Duration::from_secs(10), loopback);
        assert_eq!(defaults.keepalive_interval, ms(600));
        assert_eq!(defaults.keepalive_timeout, ms(1_800));
        assert_eq!(defaults.connect_timeout, ms(1_000));
        assert_eq!(defaults.forward_timeout, ms(12_400));
        assert_eq!(defaults.dead_peer_detection(), ms(2_400));
        assert_eq!(defaults.local_address, Some(loopback));

        // Very short election timeouts keep sane floors; an unspecified listen address
        // binds nothing.
        let any: IpAddr = "0.0.0.0".parse().expect("ip");
        let fast = PeerSettings::from_failure_detection(ms(100), ms(200), Duration::from_secs(10), any);
        assert_eq!(fast.keepalive_timeout, ms(1_000));
        assert_eq!(fast.connect_timeout, ms(1_000));
        assert_eq!(fast.local_address, None);
        assert_eq!(whole_seconds(ms(300)), Duration::from_secs(1));
        assert_eq!(whole_seconds(ms(2_400)), Duration::from_secs(3));
        assert_eq!(whole_seconds(ms(3_000)), Duration::from_secs(3));
    }

    #[test]
    fn one_channel_per_address() {
        let peers = Peers::new(PeerSettings::from_failure_detection(
            Duration::from_millis(600),
            Duration::from_millis(900),
            Duration::from_secs(10),
            "0.0.0.0".parse().expect("ip"),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        peers.channel("127.0.0.1:1").expect("channel");
        peers.channel("127.0.0.1:1").expect("the same channel");
        peers.channel("127.0.0.1:2").expect("another");
        assert_eq!(peers.channels.lock().expect("lock").len(), 2);
        assert!(matches!(peers.channel("not an address\n"), Err(PeerError::BadAddress { .. })));
    }
}
