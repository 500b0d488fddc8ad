//! `mam`: how long a message archive (XEP-0313) takes to answer what a
//! client asks on opening a conversation: the latest page of it, then pages
//! further back, as a user scrolling up does.
//!
//! One session; each round asks for the latest `max` messages exchanged
//! `with` one contact (`<before/>`), then `pages` pages before the first
//! message of the previous page. Each query is timed from sending the iq to
//! its result, every `<result/>` message read. Works against any server with
//! `urn:xmpp:mam:2` and result set management.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use starling_core::xml::{Element, escape, ns};

use super::Connection;
use crate::client::Client;
use crate::error::ClientError;
use crate::stats::{Histogram, Summary};

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";

#[derive(Debug, Clone)]
pub struct MamPlan {
    pub username: String,
    pub password: String,
    /// The contact whose conversation is read (a bare JID).
    pub with: String,
    pub rounds: u64,
    /// Pages read back after the latest one, per round.
    pub pages: u64,
    pub max: u32,
    /// Limit for one query.
    pub timeout_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MamSummary {
    pub with: String,
    pub rounds: u64,
    pub max: u32,
    /// The latest page of the conversation.
    pub latest: Summary,
    /// Each page further back.
    pub page_back: Summary,
    /// Messages received in all pages.
    pub messages: u64,
    /// Pages that came back with fewer than `max` messages before the end of
    /// the conversation was reached (none expected).
    pub short_pages: u64,
}

/// One answered query: the messages it returned and the id to page back from.
struct Page {
    count: u32,
    first: Option<String>,
}

pub async fn run(connection: &Connection, plan: &MamPlan) -> Result<MamSummary, ClientError> {
    let options = connection.login_options(plan.username.clone(), plan.password.clone());
    let mut client = Client::login(connection.server(0), &options).await?;
    let timeout = Duration::from_secs_f64(plan.timeout_s.max(0.001));
    let (mut latest, mut page_back) = (Histogram::default(), Histogram::default());
    let mut summary = MamSummary {
        with: plan.with.clone(),
        rounds: plan.rounds,
        max: plan.max,
        ..MamSummary::default()
    };
    for _ in 0..plan.rounds {
        let started = Instant::now();
        let mut page = query(&mut client, plan, None, timeout).await?;
        latest.record_duration(started.elapsed());
        summary.messages += u64::from(page.count);
        for _ in 0..plan.pages {
            let Some(before) = page.first.take() else {
                summary.short_pages += 1;
                break;
            };
            let started = Instant::now();
            page = query(&mut client, plan, Some(&before), timeout).await?;
            page_back.record_duration(started.elapsed());
            summary.messages += u64::from(page.count);
            if page.count < plan.max {
                summary.short_pages += 1;
            }
        }
    }
    summary.latest = latest.summary();
    summary.page_back = page_back.summary();
    client.close().await?;
    Ok(summary)
}

/// Asks for the `max` messages before `before` (the latest without it).
async fn query(
    client: &mut Client,
    plan: &MamPlan,
    before: Option<&str>,
    timeout: Duration,
) -> Result<Page, ClientError> {
    let id = client.next_id();
    let before = match before {
        Some(before) => format!("<before>{}</before>", escape(before)),
        None => "<before/>".to_owned(),
    };
    client
        .send(&format!(
            "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>\
             <field var='with'><value>{with}</value></field></x>\
             <set xmlns='{RSM}'><max>{max}</max>{before}</set></query></iq>",
            with = escape(&plan.with),
            max = plan.max,
        ))
        .await?;
    let mut count = 0;
    loop {
        let stanza = client.next_stanza(timeout).await?;
        if stanza.is("message", ns::CLIENT) && stanza.child("result", MAM).is_some() {
            count += 1;
            continue;
        }
        if stanza.is("iq", ns::CLIENT) && stanza.attr("id") == Some(id.as_str()) {
            if stanza.attr("type") != Some("result") {
                return Err(ClientError::Unexpected {
                    step: "archive query",
                    expected: "a result",
                    got: stanza.to_string(),
                });
            }
            let first = stanza
                .child("fin", MAM)
                .and_then(|fin| fin.child("set", RSM))
                .and_then(|set| set.child("first", RSM))
                .map(Element::text);
            return Ok(Page { count, first });
        }
    }
}
