//! The watcher of a [`Discovery`]: a subscription on every sentinel to the promotion of a replica
//! and to `+switch-master`, and a poll of the sentinels; every new primary of the service is
//! recorded ([`Discovery::switched`]) and reported to the store's hook. See the
//! [module documentation](super#following-failovers).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::RedisError;

use super::{timed_out, Discovery, NodeAddr, BACKSTOP};

/// The channel on which sentinels announce a new primary, once the failover is complete (the
/// other replicas reconfigured).
pub(super) const SWITCH_CHANNEL: &str = "+switch-master";

/// The channel on which the sentinel leading a failover announces that it has just sent `REPLICAOF
/// NO ONE` to the replica it promotes. From then on writes to the old primary are lost (the new one
/// no longer replicates it), while `+switch-master` comes only after the other replicas are
/// reconfigured (up to a second or more later): following this event shortens the window in which
/// the old primary acknowledges writes that a failover then discards.
pub(super) const PROMOTION_CHANNEL: &str = "+failover-state-wait-promotion";

impl Discovery {
    /// Records that the primary is now `new`. When another one was known, that is a switch: it is
    /// counted, the old primary is remembered (see [`STALE_AFTER_SWITCH`]) and the hook of
    /// [`Discovery::watch`] runs. Returns whether it was a switch.
    pub(super) fn switched(&self, new: NodeAddr) -> bool {
        let old = {
            let mut primary = self.primary.write();
            if primary.as_ref() == Some(&new) {
                return false;
            }
            primary.replace(new.clone())
        };
        let Some(old) = old else {
            return false;
        };
        *self.switched_from.lock() = Some((old.clone(), Instant::now()));
        self.switches.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "cache_redis", service = %self.spec.service, from = %old, to = %new, "the sentinels switched the primary");
        let hook = self.on_switch.lock().clone();
        if let Some(hook) = hook {
            hook(&new);
        }
        true
    }

    /// Parses a message of the watched channels and returns the new primary when it is about our
    /// service: `+switch-master` (`<name> <old ip> <old port> <new ip> <new port>`) or
    /// `+failover-state-wait-promotion` (`slave <ip>:<port> <ip> <port> @ <name> <old ip> <old
    /// port>`, the replica being promoted).
    pub(super) fn parse_switch(&self, channel: &str, payload: &str) -> Option<NodeAddr> {
        let parts: Vec<&str> = payload.split(' ').collect();
        let (name, host, port) = match (channel, parts.as_slice()) {
            (SWITCH_CHANNEL, [name, _, _, host, port]) => (*name, *host, *port),
            (PROMOTION_CHANNEL, [_, _, host, port, "@", name, _, _]) => (*name, *host, *port),
            _ => return None,
        };
        (name == self.spec.service).then_some(NodeAddr {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }

    /// Subscribes to `+switch-master` and `+failover-state-wait-promotion` on sentinel `idx`.
    async fn subscribe(
        &self,
        idx: usize,
    ) -> std::result::Result<redis::aio::PubSubStream, RedisError> {
        let client = redis::Client::open(self.spec.sentinels[idx].clone())?;
        let setup = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub
                .subscribe(&[SWITCH_CHANNEL, PROMOTION_CHANNEL])
                .await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        tokio::time::timeout(
            self.connect_timeout + self.response_timeout + BACKSTOP,
            setup,
        )
        .await
        .map_err(|_| timed_out())?
    }

    /// Starts the watcher (see [Following failovers](self#following-failovers)): one subscriber
    /// per sentinel (a failover's promotion is announced by the sentinel that leads it, which can
    /// be any of them) and a poll of the sentinels every `every`. `on_switch` runs with the new
    /// primary each time the service's primary changes (also when a discovery finds the change
    /// first). The task holds weak references and ends when the discovery is dropped; abort it
    /// through the handle to end it sooner.
    pub(crate) fn watch<F>(
        self: &Arc<Self>,
        every: Duration,
        on_switch: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&NodeAddr) + Send + Sync + 'static,
    {
        *self.on_switch.lock() = Some(Arc::new(on_switch));
        let every = every.max(Duration::from_millis(10));
        let subscribers: Vec<_> = (0..self.spec.sentinels.len())
            .map(|idx| subscriber(Arc::downgrade(self), idx, every))
            .collect();
        let poll = poller(Arc::downgrade(self), every);
        tokio::spawn(async move {
            futures::future::join(futures::future::join_all(subscribers), poll).await;
        })
    }

    /// Asks sentinel `idx` for the primary and records a change; false when it did not answer.
    async fn check(&self, idx: usize) -> bool {
        match self.ask_primary(idx).await {
            // The sentinel still names the old primary of a switch announced to us (at the
            // promotion, or by a quicker sentinel): it has not caught up yet.
            Ok(Some(addr)) if self.recently_switched_from(&addr) => true,
            Ok(Some(addr)) => {
                self.switched(addr.clone());
                // The first answer, before any connection: just remember it.
                self.primary.write().get_or_insert(addr);
                true
            }
            // A sentinel that does not know the service is no use to ask.
            Ok(None) => false,
            Err(_) => false,
        }
    }

    /// One check on the sentinels in order until one answers.
    async fn poll_once(&self) {
        for idx in self.order() {
            if self.check(idx).await {
                return;
            }
            self.pass_over(idx);
        }
    }
}

/// Keeps a subscription to sentinel `idx`'s announcements and records every new primary of the
/// service they name; resubscribes after a pause when the sentinel closes the connection or cannot
/// be reached.
async fn subscriber(weak: Weak<Discovery>, idx: usize, every: Duration) {
    let mut failures: u32 = 0;
    loop {
        let Some(this) = weak.upgrade() else { return };
        let subscribed = this.subscribe(idx).await;
        match subscribed {
            Ok(mut stream) => {
                failures = 0;
                drop(this);
                while let Some(msg) = stream.next().await {
                    let Some(this) = weak.upgrade() else { return };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(new) = this.parse_switch(msg.get_channel_name(), &payload) {
                        this.switched(new);
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(target: "cache_redis", sentinel = %this.names[idx], error = %e, "cannot subscribe to the sentinel's announcements");
            }
        }
        tokio::time::sleep(every.saturating_mul(failures.clamp(1, 10))).await;
    }
}

/// Asks the sentinels for the primary every `every` (covers a lost subscription or message).
async fn poller(weak: Weak<Discovery>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(this) = weak.upgrade() else { return };
        this.poll_once().await;
    }
}
