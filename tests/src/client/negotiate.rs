//! Stream negotiation steps of the test client (RFC 6120 §4.3, §5, §6, §7; RFC 3921 §3):
//! stream open and restarts, STARTTLS, SASL, resource binding and the legacy session.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use starling_core::jid::FullJid;
use starling_core::xml::{Element, escape, ns};
use tokio::time::{Instant, timeout_at};

use super::{Client, unexpected};
use crate::error::{ClientError, condition_of};
use crate::sasl::{ChannelBinding, Mechanism, SaslError, ScramClient, plain_initial_response};
use crate::tls::insecure_connector;
use crate::transport::Transport;
use crate::xml_reader::StreamEvent;

impl Client {
    /// Upgrades the connection with STARTTLS (RFC 6120 §5) and restarts the stream.
    pub async fn starttls(&mut self) -> Result<(), ClientError> {
        const STEP: &str = "starttls";
        self.require_feature(STEP, "starttls", ns::TLS)?;
        self.send_element(&Element::new("starttls", ns::TLS))
            .await?;
        let answer = self
            .expect_in(STEP, |e| e.ns() == ns::TLS, self.timeout)
            .await?;
        if !answer.is("proceed", ns::TLS) {
            return Err(unexpected(STEP, "<proceed/>", &answer));
        }
        if !self.reader.unparsed().is_empty() || !self.pending.is_empty() {
            // Anything sent in clear after <proceed/> would be injected into the TLS stream.
            return Err(ClientError::Unexpected {
                step: STEP,
                expected: "nothing after <proceed/>",
                got: String::from_utf8_lossy(self.reader.unparsed()).into_owned(),
            });
        }
        let tcp = self.transport.take_tcp().ok_or(ClientError::Unexpected {
            step: STEP,
            expected: "a plain TCP connection",
            got: "a connection that is already TLS".to_owned(),
        })?;
        let connector = insecure_connector().map_err(ClientError::TlsConfig)?;
        let server_name = ServerName::try_from(self.domain.clone())
            .map_err(|error| ClientError::TlsConfig(rustls::Error::General(error.to_string())))?;
        let handshake = connector.connect(server_name, tcp);
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout {
                step: "tls handshake",
                waited: self.timeout,
                received: "nothing".to_owned(),
            })?
            .map_err(ClientError::TlsHandshake)?;
        self.transport = Transport::Tls(Box::new(tls));
        self.open_stream("stream restart after STARTTLS").await
    }

    /// Authenticates with SASL (RFC 6120 §6) and restarts the stream. Without a mechanism,
    /// the strongest one offered is used. Returns the mechanism used.
    pub async fn authenticate(
        &mut self,
        username: &str,
        password: &str,
        mechanism: Option<Mechanism>,
    ) -> Result<Mechanism, ClientError> {
        self.authenticate_with(username, password, mechanism, &ChannelBinding::Auto)
            .await
    }

    /// [`Client::authenticate`] with a chosen channel binding.
    pub async fn authenticate_with(
        &mut self,
        username: &str,
        password: &str,
        mechanism: Option<Mechanism>,
        binding: &ChannelBinding,
    ) -> Result<Mechanism, ClientError> {
        const STEP: &str = "sasl";
        let offered = self.mechanisms();
        let is_offered = |mechanism: &Mechanism| offered.iter().any(|m| m == mechanism.name());
        let ours = self.channel_bindings();
        let advertised = self.advertised_binding_types();
        // The first advertised type the client can compute (XEP-0440); without the
        // feature, the strongest the client has.
        let candidates: Vec<&str> = if advertised.is_empty() {
            vec!["tls-exporter", "tls-server-end-point"]
        } else {
            advertised.iter().map(String::as_str).collect()
        };
        let auto_type = candidates
            .into_iter()
            .find(|name| ours.data(name).is_some())
            .map(str::to_owned);
        let can_bind = |mechanism: &Mechanism| {
            !mechanism.is_plus() || *binding != ChannelBinding::Auto || auto_type.is_some()
        };
        let chosen = match mechanism {
            Some(wanted) if is_offered(&wanted) => wanted,
            Some(wanted) => return Err(self.missing(STEP, wanted.name())),
            None => Mechanism::PREFERENCE
                .into_iter()
                .find(|mechanism| is_offered(mechanism) && can_bind(mechanism))
                .ok_or_else(|| self.missing(STEP, "a known SASL mechanism"))?,
        };
        match chosen.scram_hash() {
            None => {
                let initial = plain_initial_response(username, password);
                self.send_auth(chosen, &initial).await?;
                let answer = self.expect_sasl().await?;
                self.finish_sasl(chosen, &answer)?;
            }
            Some(hash) => {
                let mut scram = ScramClient::new(hash, username, password);
                let plus_offered = offered.iter().any(|name| name.ends_with("-PLUS"));
                match binding {
                    ChannelBinding::ClaimUnsupported => scram.claim_binding_unsupported(),
                    ChannelBinding::Data(name, data) => scram.bind(name, data),
                    ChannelBinding::Type(name) => {
                        let data = ours.data(name).ok_or_else(|| {
                            self.missing(
                                STEP,
                                &format!("channel binding {name} on this connection"),
                            )
                        })?;
                        scram.bind(name, data);
                    }
                    ChannelBinding::Auto if chosen.is_plus() => {
                        let name = auto_type.as_deref().unwrap_or("tls-exporter");
                        let data = ours.data(name).ok_or_else(|| {
                            self.missing(STEP, "a channel binding this client can compute")
                        })?;
                        scram.bind(name, data);
                    }
                    // RFC 5802 section 6: "y" when the client could bind but the server
                    // offers no -PLUS.
                    ChannelBinding::Auto if !ours.is_empty() && !plus_offered => {
                        scram.claim_binding_unsupported();
                    }
                    ChannelBinding::Auto => {}
                }
                self.send_auth(chosen, scram.client_first().as_bytes())
                    .await?;
                let mut verified = false;
                loop {
                    let answer = self.expect_sasl().await?;
                    if answer.is("challenge", ns::SASL) {
                        let data = decode_sasl(chosen, &answer)?;
                        let response = if scram.awaiting_server_final() {
                            // Server-final sent as a challenge (RFC 6120 §6.3.10 allows
                            // either): verify it and answer with an empty response.
                            scram
                                .verify_server_final(&data)
                                .map_err(|source| sasl_error(chosen, source))?;
                            verified = true;
                            Vec::new()
                        } else {
                            scram
                                .client_final(&data)
                                .map_err(|source| sasl_error(chosen, source))?
                                .into_bytes()
                        };
                        self.send_sasl_data("response", &response).await?;
                        continue;
                    }
                    self.finish_sasl(chosen, &answer)?;
                    let data = decode_sasl(chosen, &answer)?;
                    if !data.is_empty() {
                        scram
                            .verify_server_final(&data)
                            .map_err(|source| sasl_error(chosen, source))?;
                    } else if !verified {
                        // Without the server signature we cannot tell the server knew the
                        // password: that is exactly what SCRAM is for.
                        return Err(sasl_error(
                            chosen,
                            SaslError::MissingField('v', String::new()),
                        ));
                    }
                    break;
                }
            }
        }
        self.open_stream("stream restart after SASL").await?;
        Ok(chosen)
    }

    /// Binds a resource (RFC 6120 §7); `None` lets the server choose one.
    pub async fn bind(&mut self, resource: Option<&str>) -> Result<FullJid, ClientError> {
        const STEP: &str = "bind";
        self.require_feature(STEP, "bind", ns::BIND)?;
        let mut bind = Element::new("bind", ns::BIND);
        if let Some(resource) = resource {
            bind.push_child(Element::new("resource", ns::BIND).with_text(resource));
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(bind);
        let result = self.iq_step(STEP, iq, self.timeout).await?;
        let text = result
            .child("bind", ns::BIND)
            .and_then(|bind| bind.child("jid", ns::BIND))
            .map(|jid| jid.text())
            .ok_or_else(|| unexpected(STEP, "a result with <bind><jid/></bind>", &result))?;
        let jid = FullJid::new(text.trim()).map_err(|source| ClientError::Jid {
            step: STEP,
            jid: text.clone(),
            source,
        })?;
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// Sends the legacy session iq (RFC 3921 §3) if the server advertises it; returns
    /// whether it was sent.
    pub async fn session(&mut self) -> Result<bool, ClientError> {
        if !self.features.has_child("session", ns::SESSION) {
            return Ok(false);
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(Element::new("session", ns::SESSION));
        self.iq_step("session", iq, self.timeout).await?;
        Ok(true)
    }

    pub(super) async fn open_stream(&mut self, step: &'static str) -> Result<(), ClientError> {
        self.reader.reset();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}' \
             version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAM,
            escape(&self.domain)
        );
        self.send(&header).await?;
        let deadline = Instant::now() + self.timeout;
        let event = timeout_at(deadline, self.read_event(step))
            .await
            .map_err(|_| self.timeout_error(step))??;
        match event {
            StreamEvent::Open(header) => self.header = header,
            StreamEvent::Stanza(element) if element.is("error", ns::STREAM) => {
                return Err(ClientError::from_stream_error(step, &element));
            }
            StreamEvent::Stanza(element) => {
                return Err(unexpected(step, "a stream header", &element));
            }
            StreamEvent::Close => {
                return Err(ClientError::Closed {
                    step,
                    received: "nothing".to_owned(),
                });
            }
        }
        let features = timeout_at(deadline, self.read_element(step))
            .await
            .map_err(|_| self.timeout_error(step))??;
        if features.is("error", ns::STREAM) {
            return Err(ClientError::from_stream_error(step, &features));
        }
        if !features.is("features", ns::STREAM) {
            return Err(unexpected(step, "<stream:features/>", &features));
        }
        self.features = features;
        Ok(())
    }

    async fn expect_sasl(&mut self) -> Result<Element, ClientError> {
        self.expect_in("sasl", |e| e.ns() == ns::SASL, self.timeout)
            .await
    }

    async fn send_auth(&mut self, mechanism: Mechanism, initial: &[u8]) -> Result<(), ClientError> {
        let auth = Element::new("auth", ns::SASL)
            .with_attr("mechanism", mechanism.name())
            .with_text(encode_sasl(initial));
        self.send_element(&auth).await
    }

    async fn send_sasl_data(&mut self, name: &'static str, data: &[u8]) -> Result<(), ClientError> {
        let mut element = Element::new(name, ns::SASL);
        if !data.is_empty() {
            element.push_text(BASE64.encode(data));
        }
        self.send_element(&element).await
    }

    /// Turns the SASL outcome into `Ok` for `<success/>` or the failure's condition.
    fn finish_sasl(&self, mechanism: Mechanism, answer: &Element) -> Result<(), ClientError> {
        if answer.is("success", ns::SASL) {
            return Ok(());
        }
        if answer.is("failure", ns::SASL) {
            return Err(ClientError::SaslFailure {
                mechanism,
                condition: condition_of(answer, ns::SASL).unwrap_or_default(),
                text: answer.child("text", ns::SASL).map(|text| text.text()),
            });
        }
        Err(unexpected(
            "sasl",
            "<success/>, <failure/> or <challenge/>",
            answer,
        ))
    }

    fn require_feature(
        &self,
        step: &'static str,
        name: &str,
        namespace: &str,
    ) -> Result<(), ClientError> {
        if self.features.has_child(name, namespace) {
            return Ok(());
        }
        Err(self.missing(step, &format!("<{name} xmlns='{namespace}'/>")))
    }

    pub(super) fn missing(&self, step: &'static str, feature: &str) -> ClientError {
        ClientError::MissingFeature {
            step,
            feature: feature.to_owned(),
            features: self.features.to_string(),
        }
    }
}

fn sasl_error(mechanism: Mechanism, source: SaslError) -> ClientError {
    ClientError::Sasl { mechanism, source }
}

/// RFC 6120 §6.4.2: an empty initial response is sent as `=`.
fn encode_sasl(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        BASE64.encode(data)
    }
}

fn decode_sasl(mechanism: Mechanism, element: &Element) -> Result<Vec<u8>, ClientError> {
    let text = element.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64
        .decode(text)
        .map_err(|source| sasl_error(mechanism, source.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_payloads_follow_rfc6120_encoding() {
        assert_eq!(encode_sasl(b""), "=");
        assert_eq!(encode_sasl(b"\0u\0p"), "AHUAcA==");
        let success = Element::new("success", ns::SASL).with_text("=");
        assert!(decode_sasl(Mechanism::Plain, &success).unwrap().is_empty());
        let challenge = Element::new("challenge", ns::SASL).with_text("AHUAcA==");
        assert_eq!(
            decode_sasl(Mechanism::Plain, &challenge).unwrap(),
            b"\0u\0p"
        );
        let bad = Element::new("challenge", ns::SASL).with_text("!!");
        assert!(decode_sasl(Mechanism::Plain, &bad).is_err());
    }
}
