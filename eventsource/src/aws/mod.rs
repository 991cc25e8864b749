//! A small AWS client shared by the `sqs`, `s3` and `sns` sources: SigV4 signing ([`sigv4`]: AWS's
//! `aws-sigv4` crate with the settings these calls need), credentials ([`credentials`]: static secret
//! references, else the default chain documented there), and the handful of calls the sources make —
//! SQS `GetQueueUrl`/`ReceiveMessage`/`DeleteMessage` (the SQS JSON protocol), S3 `ListObjectsV2` and
//! SNS `Subscribe`/`ConfirmSubscription`/`Unsubscribe` (the SNS Query protocol). Hand-written over
//! reqwest rather than the aws-sdk crates to keep the build small; an `endpoint` override points any
//! call at an S3/SQS-compatible server (S3 then uses path-style addressing: `<endpoint>/<bucket>?…`).

pub mod credentials;
pub mod sigv4;
pub mod xml;

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

pub use credentials::{Credentials, CredentialsProvider};

/// Why an AWS call failed.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No credentials were found by the default chain.
    #[error("failed to find AWS credentials (set accessKey/secretKey, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity token, or a shared credentials profile)")]
    NoCredentials,
    /// The web identity exchange failed.
    #[error("failed to assume a role with the web identity token: {0}")]
    WebIdentity(String),
    /// The request could not be signed (e.g. an `endpoint` without a scheme).
    #[error("failed to sign {service} {action}")]
    Sign {
        service: &'static str,
        action: &'static str,
        #[source]
        source: sigv4::SignError,
    },
    /// The request did not complete.
    #[error("failed to call {service} {action}")]
    Send {
        service: &'static str,
        action: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with an error.
    #[error("failed to call {service} {action}: {status} {code}: {message}")]
    Service {
        service: &'static str,
        action: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    /// The answer could not be read.
    #[error("failed to read the answer of {service} {action}: {reason}")]
    Decode {
        service: &'static str,
        action: &'static str,
        reason: String,
    },
}

/// A signing HTTP client for one region and set of credentials.
#[derive(Clone)]
pub struct AwsClient {
    http: reqwest::Client,
    credentials: CredentialsProvider,
    region: String,
}

/// One signed request: the API call it makes and what goes on the wire.
struct Call<'a> {
    service: &'static str,
    action: &'static str,
    method: reqwest::Method,
    /// Scheme and host (`https://sqs.eu-west-1.amazonaws.com`), or an endpoint override.
    base: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    /// Headers to sign and send besides the ones signing adds.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    protocol: Protocol,
}

impl<'a> Call<'a> {
    /// A call without query, extra headers or body.
    fn new(
        service: &'static str,
        action: &'static str,
        method: reqwest::Method,
        base: &'a str,
        path: &'a str,
        protocol: Protocol,
    ) -> Self {
        Self {
            service,
            action,
            method,
            base,
            path,
            query: &[],
            headers: Vec::new(),
            body: Vec::new(),
            protocol,
        }
    }
}

/// How a service writes its errors.
#[derive(Clone, Copy)]
enum Protocol {
    /// The AWS JSON protocol (SQS): `{"__type": "…#Code", "message": "…"}`.
    Json,
    /// XML (S3, and the Query protocol of SNS and STS): `<Code>` and `<Message>` elements.
    Xml,
}

impl Protocol {
    /// The error of a non-2xx answer with `body`.
    fn error(self, service: &'static str, action: &'static str, status: u16, body: &[u8]) -> AwsError {
        let (code, message) = match self {
            Self::Json => {
                let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let code = value["__type"].as_str().unwrap_or_default();
                let code = code.rsplit('#').next().unwrap_or(code).to_string();
                let message = value["message"]
                    .as_str()
                    .or(value["Message"].as_str())
                    .unwrap_or_default()
                    .to_string();
                (code, message)
            }
            Self::Xml => {
                let text = String::from_utf8_lossy(body);
                (
                    xml::text(&text, "Code").unwrap_or_default(),
                    xml::text(&text, "Message").unwrap_or_default(),
                )
            }
        };
        AwsError::Service {
            service,
            action,
            status,
            code,
            message,
        }
    }
}

/// One SQS message as received.
#[derive(Clone, Debug, PartialEq)]
pub struct SqsMessage {
    /// `MessageId`.
    pub message_id: String,
    /// `ReceiptHandle`, needed to delete it.
    pub receipt_handle: String,
    /// `Body`.
    pub body: String,
    /// `MessageAttributes` as SQS returns them (name → {DataType, StringValue, …}).
    pub message_attributes: Value,
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedObject {
    /// The key.
    pub key: String,
    /// The ETag, without quotes.
    pub etag: String,
    /// The size in bytes.
    pub size: u64,
    /// `LastModified`.
    pub last_modified: String,
}

impl AwsClient {
    /// A client signing for `region`.
    pub fn new(credentials: CredentialsProvider, region: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            // Longer than the 20 s SQS long poll, so a poll is never cut short by the client.
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            http,
            credentials,
            region: region.into(),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A request for `call`, signed with SigV4 (headers `x-amz-date`, `x-amz-content-sha256`, the
    /// session token when there is one, and `authorization`; see [`sigv4`]).
    async fn signed(
        &self,
        http: &reqwest::Client,
        call: Call<'_>,
    ) -> Result<reqwest::RequestBuilder, AwsError> {
        let creds = self.credentials.get(&self.http, &self.region).await?;
        let base = call.base.trim_end_matches('/');
        let qs = sigv4::canonical_query(call.query);
        let url = if qs.is_empty() {
            format!("{base}{}", call.path)
        } else {
            format!("{base}{}?{qs}", call.path)
        };
        let request = sigv4::Request {
            method: call.method.as_str(),
            url: &url,
            headers: &call.headers,
            body: &call.body,
        };
        let time = SystemTime::now();
        let signing = sigv4::sign(&request, &creds, &self.region, call.service, time).map_err(|source| {
            AwsError::Sign {
                service: call.service,
                action: call.action,
                source,
            }
        })?;
        let mut request = http.request(call.method, url).body(call.body);
        for (k, v) in call.headers.iter().chain(&signing) {
            request = request.header(k.as_str(), v.as_str());
        }
        Ok(request)
    }

    /// Signs and sends `call`; the answer's body on a 2xx status, else the service's error (code and
    /// message read from the body in the call's protocol).
    async fn call(&self, call: Call<'_>) -> Result<Vec<u8>, AwsError> {
        let (service, action, protocol) = (call.service, call.action, call.protocol);
        let send = |source| AwsError::Send {
            service,
            action,
            source,
        };
        let response = self.signed(&self.http, call).await?.send().await.map_err(send)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(send)?;
        if !(200..300).contains(&status) {
            return Err(protocol.error(service, action, status, &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// A Query-protocol call (SNS, STS): form-encoded `Action=…&Version=…` plus `params`, XML answer,
    /// returned as text.
    async fn query_call(
        &self,
        service: &'static str,
        version: &str,
        endpoint: &str,
        action: &'static str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        let mut form = format!("Action={action}&Version={version}");
        for (k, v) in params {
            form.push('&');
            form.push_str(&sigv4::uri_encode(k, false));
            form.push('=');
            form.push_str(&sigv4::uri_encode(v, false));
        }
        let body = self
            .call(Call {
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                )],
                body: form.into_bytes(),
                ..Call::new(
                    service,
                    action,
                    reqwest::Method::POST,
                    endpoint,
                    "/",
                    Protocol::Xml,
                )
            })
            .await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A signed GET whose answer is read as a stream (MinIO's listen API); errors on a non-2xx status.
    pub async fn stream(
        &self,
        service: &'static str,
        base: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<reqwest::Response, AwsError> {
        let action = "ListenBucketNotification";
        // No overall timeout: the stream stays open; MinIO's `ping` keeps it alive.
        let client = reqwest::Client::new();
        let call = Call {
            query,
            ..Call::new(service, action, reqwest::Method::GET, base, path, Protocol::Xml)
        };
        let response = self
            .signed(&client, call)
            .await?
            .send()
            .await
            .map_err(|source| AwsError::Send {
                service,
                action,
                source,
            })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response.bytes().await.unwrap_or_default();
            return Err(Protocol::Xml.error(service, action, status, &body));
        }
        Ok(response)
    }

    /// One SQS JSON-protocol call.
    async fn sqs_call(&self, endpoint: &str, action: &'static str, input: Value) -> Result<Value, AwsError> {
        let body = self
            .call(Call {
                headers: vec![
                    ("content-type".into(), "application/x-amz-json-1.0".into()),
                    ("x-amz-target".into(), format!("AmazonSQS.{action}")),
                ],
                body: serde_json::to_vec(&input).unwrap_or_default(),
                ..Call::new(
                    "sqs",
                    action,
                    reqwest::Method::POST,
                    endpoint,
                    "/",
                    Protocol::Json,
                )
            })
            .await?;
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body).map_err(|e| AwsError::Decode {
            service: "sqs",
            action,
            reason: e.to_string(),
        })
    }

    /// The URL of a queue: `queue` itself when it is a URL, else `GetQueueUrl`.
    pub async fn sqs_queue_url(
        &self,
        endpoint: &str,
        queue: &str,
        account_id: Option<&str>,
    ) -> Result<String, AwsError> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.to_string());
        }
        let mut input = json!({ "QueueName": queue });
        if let Some(account) = account_id.filter(|a| !a.is_empty()) {
            input["QueueOwnerAWSAccountId"] = json!(account);
        }
        let out = self.sqs_call(endpoint, "GetQueueUrl", input).await?;
        out["QueueUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or(AwsError::Decode {
                service: "sqs",
                action: "GetQueueUrl",
                reason: "no QueueUrl in the answer".into(),
            })
    }

    /// Long-polls up to 10 messages.
    pub async fn sqs_receive(
        &self,
        endpoint: &str,
        queue_url: &str,
        wait_seconds: i64,
    ) -> Result<Vec<SqsMessage>, AwsError> {
        let out = self
            .sqs_call(
                endpoint,
                "ReceiveMessage",
                json!({
                    "QueueUrl": queue_url,
                    "MaxNumberOfMessages": 10,
                    "WaitTimeSeconds": wait_seconds,
                    "MessageAttributeNames": ["All"],
                }),
            )
            .await?;
        Ok(sqs_messages(&out))
    }

    /// Deletes a received message.
    pub async fn sqs_delete(
        &self,
        endpoint: &str,
        queue_url: &str,
        receipt_handle: &str,
    ) -> Result<(), AwsError> {
        self.sqs_call(
            endpoint,
            "DeleteMessage",
            json!({ "QueueUrl": queue_url, "ReceiptHandle": receipt_handle }),
        )
        .await
        .map(|_| ())
    }

    /// Every object of `bucket` under `prefix` (all pages of ListObjectsV2).
    pub async fn s3_list(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<ListedObject>, AwsError> {
        let path = format!("/{}", sigv4::uri_encode(bucket, false));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type".to_string(), "2".to_string())];
            if let Some(p) = prefix.filter(|p| !p.is_empty()) {
                query.push(("prefix".into(), p.into()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token".into(), t.clone()));
            }
            let bytes = self
                .call(Call {
                    query: &query,
                    ..Call::new(
                        "s3",
                        "ListObjectsV2",
                        reqwest::Method::GET,
                        endpoint,
                        &path,
                        Protocol::Xml,
                    )
                })
                .await?;
            let text = String::from_utf8_lossy(&bytes);
            for c in xml::elements(&text, "Contents") {
                let Some(key) = xml::text(c, "Key") else { continue };
                out.push(ListedObject {
                    key,
                    etag: xml::text(c, "ETag")
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_string(),
                    size: xml::text(c, "Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                    last_modified: xml::text(c, "LastModified").unwrap_or_default(),
                });
            }
            let truncated = xml::text(&text, "IsTruncated").is_some_and(|t| t == "true");
            token = xml::text(&text, "NextContinuationToken");
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }
}

impl AwsClient {
    /// One SNS Query-protocol call (form-encoded `Action=…&Version=2010-03-31`, XML answer); returns
    /// the answer's text.
    pub async fn sns_call(
        &self,
        endpoint: &str,
        action: &'static str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        self.query_call("sns", "2010-03-31", endpoint, action, params)
            .await
    }

    /// SNS `Subscribe`: subscribes `endpoint_url` (protocol `http` or `https`) to `topic_arn`;
    /// returns the subscription ARN (`pending confirmation` until the endpoint confirmed it).
    pub async fn sns_subscribe(
        &self,
        endpoint: &str,
        topic_arn: &str,
        protocol: &str,
        endpoint_url: &str,
    ) -> Result<String, AwsError> {
        let text = self
            .sns_call(
                endpoint,
                "Subscribe",
                &[
                    ("TopicArn", topic_arn),
                    ("Protocol", protocol),
                    ("Endpoint", endpoint_url),
                    ("ReturnSubscriptionArn", "true"),
                ],
            )
            .await?;
        xml::text(&text, "SubscriptionArn").ok_or(AwsError::Decode {
            service: "sns",
            action: "Subscribe",
            reason: "no SubscriptionArn in the answer".into(),
        })
    }

    /// SNS `ConfirmSubscription` with the token of a SubscriptionConfirmation message.
    pub async fn sns_confirm(
        &self,
        endpoint: &str,
        topic_arn: &str,
        token: &str,
    ) -> Result<String, AwsError> {
        let text = self
            .sns_call(
                endpoint,
                "ConfirmSubscription",
                &[("TopicArn", topic_arn), ("Token", token)],
            )
            .await?;
        Ok(xml::text(&text, "SubscriptionArn").unwrap_or_default())
    }

    /// STS `AssumeRole`; returns the answer's XML.
    pub async fn sts_assume_role(
        &self,
        endpoint: &str,
        role_arn: &str,
        session: &str,
    ) -> Result<String, AwsError> {
        let params = [("RoleArn", role_arn), ("RoleSessionName", session)];
        self.query_call("sts", "2011-06-15", endpoint, "AssumeRole", &params)
            .await
    }

    /// SNS `Unsubscribe`.
    pub async fn sns_unsubscribe(&self, endpoint: &str, subscription_arn: &str) -> Result<(), AwsError> {
        self.sns_call(endpoint, "Unsubscribe", &[("SubscriptionArn", subscription_arn)])
            .await
            .map(|_| ())
    }
}

/// The messages of a `ReceiveMessage` answer (SQS JSON protocol). Pure, so it is fuzzed
/// (`fuzz/fuzz_targets/sqs_sns_messages.rs`).
pub fn sqs_messages(out: &Value) -> Vec<SqsMessage> {
    let Some(messages) = out["Messages"].as_array() else {
        return Vec::new();
    };
    messages
        .iter()
        .filter_map(|m| {
            let (Some(message_id), Some(receipt_handle)) =
                (m["MessageId"].as_str(), m["ReceiptHandle"].as_str())
            else {
                // Why dropped (and said so): without a receipt handle a message can be neither
                // deleted nor released, and SQS always sends both; only a non-conforming server
                // answers this.
                tracing::warn!(
                    has_message_id = m["MessageId"].is_string(),
                    has_receipt_handle = m["ReceiptHandle"].is_string(),
                    "dropped an SQS message without MessageId or ReceiptHandle (not an SQS answer)"
                );
                return None;
            };
            Some(SqsMessage {
                message_id: message_id.to_string(),
                receipt_handle: receipt_handle.to_string(),
                body: m["Body"].as_str().unwrap_or_default().to_string(),
                message_attributes: m.get("MessageAttributes").cloned().unwrap_or(json!({})),
            })
        })
        .collect()
}

/// The STS endpoint: the source's `endpoint` override when set (an AWS-compatible server serves STS
/// there too), else `https://sts.<region>.amazonaws.com`.
pub fn sts_endpoint(endpoint: Option<&str>, region: &str) -> String {
    match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) if e.contains("://") => e.trim_end_matches('/').to_string(),
        Some(e) => format!("https://{}", e.trim_end_matches('/')),
        None => format!("https://sts.{region}.amazonaws.com"),
    }
}

/// The SNS endpoint for `region` unless overridden.
pub fn sns_endpoint(endpoint: Option<&str>, region: &str) -> String {
    match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) if e.contains("://") => e.trim_end_matches('/').to_string(),
        Some(e) => format!("https://{}", e.trim_end_matches('/')),
        None => format!("https://sns.{region}.amazonaws.com"),
    }
}

/// The SQS endpoint for `region` unless overridden.
pub fn sqs_endpoint(endpoint: Option<&str>, region: &str) -> String {
    match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => format!("https://sqs.{region}.amazonaws.com"),
    }
}

/// The S3 endpoint for `region` unless overridden (path-style).
pub fn s3_endpoint(endpoint: Option<&str>, region: &str) -> String {
    match endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) if e.contains("://") => e.trim_end_matches('/').to_string(),
        Some(e) => format!("https://{}", e.trim_end_matches('/')),
        None => format!("https://s3.{region}.amazonaws.com"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_messages_keep_complete_messages_and_drop_ones_without_a_handle() {
        let out = json!({"Messages": [
            {"MessageId": "m1", "ReceiptHandle": "h1", "Body": "b1"},
            {"MessageId": "m2", "Body": "no handle"},
            {"ReceiptHandle": "h3"},
            {"MessageId": "m4", "ReceiptHandle": "h4"},
        ]});
        let got: Vec<(String, String, String)> = sqs_messages(&out)
            .into_iter()
            .map(|m| (m.message_id, m.receipt_handle, m.body))
            .collect();
        assert_eq!(
            got,
            [
                ("m1".into(), "h1".into(), "b1".into()),
                ("m4".into(), "h4".into(), String::new())
            ]
        );
        assert!(sqs_messages(&json!({})).is_empty(), "no Messages: none");
    }

    fn parts(e: AwsError) -> (u16, String, String) {
        match e {
            AwsError::Service {
                status,
                code,
                message,
                ..
            } => (status, code, message),
            other => panic!("not a service error: {other}"),
        }
    }

    #[test]
    fn errors_are_read_in_each_protocol() {
        let json = br#"{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no queue q"}"#;
        assert_eq!(
            parts(Protocol::Json.error("sqs", "GetQueueUrl", 400, json)),
            (400, "QueueDoesNotExist".into(), "no queue q".into())
        );
        let xml =
            b"<ErrorResponse><Error><Code>NotFound</Code><Message>no topic</Message></Error></ErrorResponse>";
        assert_eq!(
            parts(Protocol::Xml.error("sns", "Subscribe", 404, xml)),
            (404, "NotFound".into(), "no topic".into())
        );
        // A body in neither shape (a proxy's HTML page): the status still tells what happened.
        assert_eq!(
            parts(Protocol::Json.error("sqs", "ReceiveMessage", 502, b"<html>bad gateway</html>")),
            (502, String::new(), String::new())
        );
    }
}
