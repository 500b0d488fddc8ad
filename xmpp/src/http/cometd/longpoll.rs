//! The long-polling transport: each POST carries one message or a batch;
//! the answer is the batch of replies. A connect in it is held until there
//! is something to deliver, its timeout, or a newer connect; the events
//! queued for the client go out in front of the connect's reply.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::clients::LONG_POLL;
use super::engine::{Bayeux, HeldConnect, Step};
use super::message::parse_body;
use super::outbox::Event;

pub(crate) async fn handle(bayeux: Arc<Bayeux>, body: Bytes, ip: IpAddr) -> Response {
    let messages = match parse_body(&body) {
        Ok(messages) => messages,
        Err(error) => {
            let reply = json!([{"successful": false, "error": format!("400::{error}")}]);
            return json_response(StatusCode::BAD_REQUEST, reply.to_string());
        }
    };
    let mut replies = Vec::with_capacity(messages.len());
    let mut held: Option<HeldConnect> = None;
    for message in messages {
        match bayeux.handle(message, LONG_POLL, ip).await {
            Step::Reply(reply) => replies.push(Value::Object(reply).to_string()),
            Step::Connect(connect) => {
                // Two connects in one batch: the first is answered at once.
                if let Some(earlier) = held.replace(connect) {
                    let (events, reply) = bayeux.answer(&earlier, false);
                    push_answer(&mut replies, events, reply);
                }
            }
        }
    }
    if let Some(connect) = held {
        wait(&bayeux, &connect).await;
        let (events, reply) = bayeux.answer(&connect, false);
        push_answer(&mut replies, events, reply);
    }
    json_response(StatusCode::OK, format!("[{}]", replies.join(",")))
}

fn push_answer(replies: &mut Vec<String>, events: Vec<Event>, reply: Value) {
    replies.extend(events.iter().map(|event| event.to_string()));
    replies.push(reply.to_string());
}

/// Holds `connect` until it is ready, its hold time is up, or the node stops.
async fn wait(bayeux: &Bayeux, connect: &HeldConnect) {
    let deadline = Instant::now() + connect.hold;
    let shutdown = bayeux.shutdown();
    loop {
        if connect.ready(false) || shutdown.is_cancelled() {
            return;
        }
        // A wake between the check and here is kept by the Notify's permit.
        tokio::select! {
            () = connect.client.wake.notified() => {}
            () = tokio::time::sleep_until(deadline) => return,
            () = shutdown.cancelled() => return,
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}
