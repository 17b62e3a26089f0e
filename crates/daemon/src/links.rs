//! Network interfaces that come and go: the kernel's link events
//! (rtnetlink, the `RTNLGRP_LINK` group, what `ip monitor link` shows),
//! reduced to what the daemon acts on.
//!
//! The events make the daemon react at once; they are not its only source
//! of truth. A netlink socket that overflows drops events, so the daemon
//! also compares, every second, each configured name with the index the
//! kernel gives it now (see `Daemon::check_interfaces`).

use futures_util::StreamExt;
use rtnetlink::{
    MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{
        RouteNetlinkMessage,
        link::{LinkAttribute, LinkMessage},
    },
};
use tokio::{sync::mpsc, task::JoinHandle};

/// A change of one network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// The interface exists (new, or changed: renamed, up, down).
    Present {
        /// Its name now.
        name: String,
        /// Its index.
        index: u32,
    },
    /// The interface was deleted.
    Gone {
        /// Its last name.
        name: String,
        /// Its index.
        index: u32,
    },
}

/// Follows the kernel's link events; each change is sent on the returned
/// channel until the receiver is dropped. The two tasks (the netlink
/// connection and the translation) are returned so the daemon can stop
/// them.
pub fn watch() -> std::io::Result<(mpsc::Receiver<LinkChange>, [JoinHandle<()>; 2])> {
    let (conn, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])?;
    let conn = tokio::spawn(conn);
    let (tx, rx) = mpsc::channel(256);
    let translate = tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let change =
                match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => name_of(&m)
                        .map(|name| LinkChange::Present {
                            name,
                            index: m.header.index,
                        }),
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => name_of(&m)
                        .map(|name| LinkChange::Gone {
                            name,
                            index: m.header.index,
                        }),
                    _ => None,
                };
            if let Some(change) = change
                && tx.send(change).await.is_err()
            {
                break;
            }
        }
        tracing::debug!("link events: the netlink stream ended");
    });
    Ok((rx, [conn, translate]))
}

fn name_of(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}
