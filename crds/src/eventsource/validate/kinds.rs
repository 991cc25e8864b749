//! Per-kind field rules: the fields each kind needs and the combinations it forbids, following
//! what upstream Argo Events checks before starting a source (so a manifest upstream rejects is
//! rejected here too), plus checks of durations, regexes and numbers it leaves to run time. The
//! push kinds' rules are in [`push`](super::push).

use super::super::{
    AMQPEventSource, AzureEventsHubEventSource, AzureQueueStorageEventSource, AzureServiceBusEventSource,
    BitbucketEventSource, BitbucketServerEventSource, CalendarEventSource, EmitterEventSource,
    EventSourceKind as K, EventSourceSpec, Events, FileEventSource, GenericEventSource, GerritEventSource,
    GithubEventSource, GitlabEventSource, HDFSEventSource, JetStreamEventSource, KafkaEventSource,
    MNSEventSource, MQTTEventSource, NATSEventsSource, NSQEventSource, PubSubEventSource, PulsarEventSource,
    RedisEventSource, RedisStreamEventSource, ResourceEventSource, S3Artifact, S3EventSource, S3Mode,
    SFTPEventSource, SNSEventSource, SQSEventSource, SlackEventSource, StorageGridEventSource,
    StripeEventSource, WebSocketEventSource, WebhookEventSource,
};
use super::push::{
    bitbucket, bitbucket_server, gerrit, github, gitlab, slack, sns, storage_grid, stripe, webhook,
};
use super::{
    check_backoff, check_basic_auth, check_calendar, check_filter, check_opt_duration, check_watch_path,
    event_path, require, require_some,
};
use crate::common::{SASLConfig, Selector};
use crate::validate::{check_regex, Problems};

/// The field rules of one kind's events. Every kind's spec type implements it (through
/// [`rules!`]), and [`validate_kinds`], generated from the kind table, calls it for each event, so a
/// kind added to the table fails to compile until its rules are written.
#[diagnostic::on_unimplemented(
    message = "source kind spec `{Self}` has no validation rules",
    label = "this kind's events are not checked",
    note = "write `fn <kind>(e: &{Self}, p: &str, pr: &mut Problems)` in crds/src/eventsource/validate/kinds.rs \
            (push kinds: validate/push.rs) and add `{Self} => <kind>` to `rules!` there"
)]
pub(super) trait EventRules {
    /// Records the problems of one event at `path` (`spec.<kind>.<event>`).
    fn check(&self, path: &str, problems: &mut Problems);
}

/// Implements [`EventRules`] for each spec type with its rule function.
macro_rules! rules {
    ($($ty:ident => $check:path),* $(,)?) => {
        $(
            impl EventRules for $ty {
                fn check(&self, path: &str, problems: &mut Problems) {
                    $check(self, path, problems)
                }
            }
        )*
    };
}

rules! {
    AMQPEventSource => amqp,
    AzureEventsHubEventSource => azure_events_hub,
    AzureQueueStorageEventSource => azure_queue_storage,
    AzureServiceBusEventSource => azure_service_bus,
    BitbucketEventSource => bitbucket,
    BitbucketServerEventSource => bitbucket_server,
    CalendarEventSource => check_calendar,
    EmitterEventSource => emitter,
    FileEventSource => file,
    GenericEventSource => generic,
    GerritEventSource => gerrit,
    GithubEventSource => github,
    GitlabEventSource => gitlab,
    HDFSEventSource => hdfs,
    JetStreamEventSource => jetstream,
    KafkaEventSource => kafka,
    S3Artifact => minio,
    MNSEventSource => mns,
    MQTTEventSource => mqtt,
    NATSEventsSource => nats,
    NSQEventSource => nsq,
    PubSubEventSource => pub_sub,
    PulsarEventSource => pulsar,
    RedisEventSource => redis,
    RedisStreamEventSource => redis_stream,
    ResourceEventSource => resource,
    S3EventSource => s3,
    SFTPEventSource => sftp,
    SlackEventSource => slack,
    SNSEventSource => sns,
    SQSEventSource => sqs,
    StorageGridEventSource => storage_grid,
    StripeEventSource => stripe,
    WebhookEventSource => webhook,
    WebSocketEventSource => websocket,
}

fn each<T: EventRules>(events: &Events<T>, spec_path: &str, kind: K, problems: &mut Problems) {
    for (name, ev) in events.iter().flatten() {
        ev.check(&event_path(spec_path, kind, name), problems);
    }
}

/// Generates [`validate_kinds`] from the kind table: one [`each`] call per kind.
macro_rules! define_validate_kinds {
    ($( $(#[$attr:meta])* $variant:ident($field:ident, $name:literal, $place:ident) ),* $(,)?) => {
        /// Checks the events of every kind of `s` with their kind's [`EventRules`].
        pub(super) fn validate_kinds(s: &EventSourceSpec, p: &str, pr: &mut Problems) {
            $(each(&s.$field, p, K::$variant, pr);)*
        }
    };
}

crate::event_source_kinds!(define_validate_kinds);

fn sqs(e: &SQSEventSource, p: &str, pr: &mut Problems) {
    require(&e.region, p, "region", "\"us-east-1\"", pr);
    require(&e.queue, p, "queue", "\"my-queue\"", pr);
    if let Some(w) = e.wait_time_seconds {
        if !(0..=20).contains(&w) {
            pr.error(
                Problems::at(p, "waitTimeSeconds"),
                format!("waitTimeSeconds must be 0-20 (the SQS long-poll limit), got {w}"),
            );
        }
    }
    check_filter(&e.filter, p, pr);
}

fn s3(e: &S3EventSource, p: &str, pr: &mut Problems) {
    require(&e.bucket, p, "bucket", "\"my-bucket\"", pr);
    if e.access_key.is_some() != e.secret_key.is_some() {
        pr.error(
            p,
            "set both accessKey and secretKey, or neither (to use the AWS default credential chain)",
        );
    }
    match e.effective_mode() {
        S3Mode::Notifications => {
            if e.queue.as_deref().is_none_or(|q| q.trim().is_empty()) {
                pr.error(
                    Problems::at(p, "queue"),
                    "notifications mode needs the SQS queue the bucket notifies, e.g. \"my-bucket-events\"",
                );
            }
        }
        S3Mode::List => check_opt_duration(&e.interval, p, "interval", pr),
    }
    if let Some(w) = e.wait_time_seconds {
        if !(0..=20).contains(&w) {
            pr.error(
                Problems::at(p, "waitTimeSeconds"),
                format!("waitTimeSeconds must be 0-20 (the SQS long-poll limit), got {w}"),
            );
        }
    }
    check_filter(&e.filter, p, pr);
}

fn pub_sub(e: &PubSubEventSource, p: &str, pr: &mut Problems) {
    let topic = e.topic.as_deref().is_some_and(|t| !t.is_empty());
    let sub = e.subscription_id.as_deref().is_some_and(|t| !t.is_empty());
    if e.topic_project_id.as_deref().is_some_and(|t| !t.is_empty()) && !topic {
        pr.error(
            Problems::at(p, "topicProjectID"),
            "topicProjectID needs topic to be set",
        );
    }
    if !topic && !sub {
        pr.error(
            p,
            "set topic (to create a subscription) or subscriptionID (to use an existing one)",
        );
    }
    check_filter(&e.filter, p, pr);
}

fn azure_events_hub(e: &AzureEventsHubEventSource, p: &str, pr: &mut Problems) {
    require(&e.fqdn, p, "fqdn", "\"my-namespace.servicebus.windows.net\"", pr);
    require(&e.hub_name, p, "hubName", "\"my-hub\"", pr);
    if e.shared_access_key.is_some() != e.shared_access_key_name.is_some() {
        pr.error(
            p,
            "set both sharedAccessKeyName and sharedAccessKey, or neither (to use Azure AD)",
        );
    }
    check_filter(&e.filter, p, pr);
}

fn azure_queue_storage(e: &AzureQueueStorageEventSource, p: &str, pr: &mut Problems) {
    if e.connection_string.is_none() && e.storage_account_name.as_deref().is_none_or(str::is_empty) {
        pr.error(p, "set connectionString, or storageAccountName to use Azure AD");
    }
    require(&e.queue_name, p, "queueName", "\"my-queue\"", pr);
    if let Some(w) = e.wait_time_in_seconds {
        if w < 0 {
            pr.error(
                Problems::at(p, "waitTimeInSeconds"),
                format!("waitTimeInSeconds must not be negative, got {w}"),
            );
        }
    }
    check_filter(&e.filter, p, pr);
}

fn azure_service_bus(e: &AzureServiceBusEventSource, p: &str, pr: &mut Problems) {
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if e.connection_string.is_none() && !set(&e.fully_qualified_namespace) {
        pr.error(
            p,
            "set connectionString, or fullyQualifiedNamespace to use Azure AD",
        );
    }
    let (queue, topic, sub) = (set(&e.queue_name), set(&e.topic_name), set(&e.subscription_name));
    if queue && (topic || sub) {
        pr.error(
            p,
            "set either queueName or topicName with subscriptionName, not both",
        );
    } else if !(queue || (topic && sub)) {
        pr.error(p, "set queueName, or topicName together with subscriptionName");
    }
    check_filter(&e.filter, p, pr);
}

fn mns(e: &MNSEventSource, p: &str, pr: &mut Problems) {
    require(&e.queue, p, "queue", "\"my-queue\"", pr);
    require(
        e.endpoint.as_deref().unwrap_or(""),
        p,
        "endpoint",
        "\"http://123456.mns.cn-hangzhou.aliyuncs.com\"",
        pr,
    );
    check_filter(&e.filter, p, pr);
}

fn amqp(e: &AMQPEventSource, p: &str, pr: &mut Problems) {
    let url = e.url.as_deref().is_some_and(|u| !u.is_empty());
    match (url, e.url_secret.is_some()) {
        (false, false) => pr.error(p, "set url or urlSecret to reach the broker"),
        (true, true) => pr.error(
            Problems::at(p, "urlSecret"),
            "set either url or urlSecret, not both",
        ),
        _ => {}
    }
    require(&e.routing_key, p, "routingKey", "\"hello\"", pr);
    require(&e.exchange_type, p, "exchangeType", "\"fanout\"", pr);
    if e.exchange_name.is_empty() {
        pr.warning(
            Problems::at(p, "exchangeName"),
            "no exchangeName: the broker's default exchange cannot be declared or bound",
        );
    }
    if let Some(args) = e.queue_declare.as_ref().and_then(|q| q.arguments.as_deref()) {
        if !args.trim().is_empty() {
            if let Err(err) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(args) {
                pr.error(
                    Problems::at(p, "queueDeclare.arguments"),
                    format!("arguments must be a JSON object: {err}"),
                );
            }
        }
    }
    check_basic_auth(&e.auth, p, pr);
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn check_sasl(sasl: &Option<SASLConfig>, p: &str, pr: &mut Problems) {
    let Some(s) = sasl else { return };
    let at = Problems::at(p, "sasl");
    let mechanism = s.mechanism.as_deref().unwrap_or("");
    if ![
        "",
        "PLAIN",
        "OAUTHBEARER",
        "SCRAM-SHA-256",
        "SCRAM-SHA-512",
        "GSSAPI",
    ]
    .contains(&mechanism)
    {
        pr.error(
            Problems::at(&at, "mechanism"),
            format!("unknown SASL mechanism {mechanism:?}: use PLAIN, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512 or GSSAPI"),
        );
    }
    require_some(
        &s.user_secret,
        &at,
        "userSecret",
        "the Secret key holding the user name",
        pr,
    );
    require_some(
        &s.password_secret,
        &at,
        "passwordSecret",
        "the Secret key holding the password",
        pr,
    );
}

fn kafka(e: &KafkaEventSource, p: &str, pr: &mut Problems) {
    require(&e.url, p, "url", "\"kafka:9092\"", pr);
    require(&e.topic, p, "topic", "\"my-topic\"", pr);
    let partition = e.partition.as_deref().filter(|s| !s.is_empty());
    match (partition, &e.consumer_group) {
        (None, None) => pr.error(
            p,
            "set consumerGroup (to share the topic's partitions) or partition",
        ),
        (Some(part), None) if part.parse::<i32>().is_err() => pr.error(
            Problems::at(p, "partition"),
            format!("partition {part:?} is not a number"),
        ),
        _ => {}
    }
    if let Some(g) = &e.consumer_group {
        let at = Problems::at(p, "consumerGroup");
        require(&g.group_name, &at, "groupName", "\"my-group\"", pr);
        if let Some(s) = g.rebalance_strategy.as_deref().filter(|s| !s.is_empty()) {
            if !["range", "roundrobin", "sticky"].contains(&s) {
                pr.warning(
                    Problems::at(&at, "rebalanceStrategy"),
                    format!("unknown rebalanceStrategy {s:?}; range is used"),
                );
            }
        }
    }
    if let Some(n) = e.limit_events_per_second {
        if n < 0 {
            pr.error(
                Problems::at(p, "limitEventsPerSecond"),
                format!("limitEventsPerSecond must not be negative, got {n}"),
            );
        }
    }
    if let Some(config) = e.config.as_deref().filter(|c| !c.trim().is_empty()) {
        if let Err(err) = serde_yaml::from_str::<serde_yaml::Value>(config) {
            pr.error(
                Problems::at(p, "config"),
                format!("config is not valid YAML: {err}"),
            );
        }
    }
    if let Some(iam) = &e.aws_msk_iam_auth {
        require(
            &iam.region,
            &Problems::at(p, "awsMskIamAuth"),
            "region",
            "\"us-east-1\"",
            pr,
        );
    }
    if let Some(sr) = &e.schema_registry {
        require(
            &sr.url,
            &Problems::at(p, "schemaRegistry"),
            "url",
            "\"http://schema-registry:8081\"",
            pr,
        );
        check_basic_auth(&sr.auth, &Problems::at(p, "schemaRegistry"), pr);
    }
    check_sasl(&e.sasl, p, pr);
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn mqtt(e: &MQTTEventSource, p: &str, pr: &mut Problems) {
    require(&e.url, p, "url", "\"tcp://mqtt:1883\"", pr);
    require(&e.topic, p, "topic", "\"sensors/#\"", pr);
    require(&e.client_id, p, "clientId", "\"sluice-1\"", pr);
    check_basic_auth(&e.auth, p, pr);
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn nats(e: &NATSEventsSource, p: &str, pr: &mut Problems) {
    require(&e.url, p, "url", "\"nats://nats:4222\"", pr);
    require(&e.subject, p, "subject", "\"orders.>\"", pr);
    if e.queue.as_deref() == Some("") {
        pr.error(
            Problems::at(p, "queue"),
            "queue is empty: name the queue group or drop the field",
        );
    }
    if let Some(auth) = &e.auth {
        check_basic_auth(&auth.basic, &Problems::at(p, "auth"), pr);
    }
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn jetstream(e: &JetStreamEventSource, p: &str, pr: &mut Problems) {
    require(&e.url, p, "url", "\"nats://nats:4222\"", pr);
    require(&e.stream, p, "stream", "\"ORDERS\"", pr);
    if e.consumer.as_deref().unwrap_or_default().is_empty() && e.filter_subjects.is_empty() {
        pr.error(
            Problems::at(p, "consumer"),
            "set consumer (a durable consumer name) or filterSubjects (Sluice then creates a durable consumer)",
        );
    }
    if let Some(d) = e.deliver_policy.as_deref() {
        if !matches!(d, "all" | "last" | "new" | "lastPerSubject") {
            pr.error(
                Problems::at(p, "deliverPolicy"),
                format!("deliverPolicy must be one of all, last, new, lastPerSubject; got `{d}`"),
            );
        }
    }
    if let Some(auth) = &e.auth {
        check_basic_auth(&auth.basic, &Problems::at(p, "auth"), pr);
    }
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn nsq(e: &NSQEventSource, p: &str, pr: &mut Problems) {
    require(&e.host_address, p, "hostAddress", "\"nsqlookupd:4161\"", pr);
    require(&e.topic, p, "topic", "\"orders\"", pr);
    require(&e.channel, p, "channel", "\"sluice\"", pr);
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn pulsar(e: &PulsarEventSource, p: &str, pr: &mut Problems) {
    if e.topics.is_empty() {
        pr.error(
            Problems::at(p, "topics"),
            "topics are required, e.g. [\"persistent://public/default/orders\"]",
        );
    }
    require(&e.url, p, "url", "\"pulsar://pulsar:6650\"", pr);
    if let Some(t) = e.type_.as_deref().filter(|t| !t.is_empty()) {
        if t != "exclusive" && t != "shared" {
            pr.error(
                Problems::at(p, "type"),
                format!("type must be \"exclusive\" or \"shared\", got {t:?}"),
            );
        }
    }
    if e.auth_athenz_params.as_ref().is_some_and(|m| !m.is_empty()) && e.auth_athenz_secret.is_none() {
        pr.error(
            Problems::at(p, "authAthenzSecret"),
            "authAthenzParams needs authAthenzSecret (the Athenz private key)",
        );
    }
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn redis(e: &RedisEventSource, p: &str, pr: &mut Problems) {
    require(&e.host_address, p, "hostAddress", "\"redis:6379\"", pr);
    if e.channels.is_empty() {
        pr.error(
            Problems::at(p, "channels"),
            "channels are required, e.g. [\"orders\"]",
        );
    }
    if e.password.is_some() && e.namespace.as_deref().is_none_or(str::is_empty) {
        pr.warning(
            Problems::at(p, "namespace"),
            "upstream Argo Events requires namespace with password; Sluice resolves the Secret without it",
        );
    }
    check_filter(&e.filter, p, pr);
}

fn redis_stream(e: &RedisStreamEventSource, p: &str, pr: &mut Problems) {
    require(&e.host_address, p, "hostAddress", "\"redis:6379\"", pr);
    if e.streams.is_empty() {
        pr.error(
            Problems::at(p, "streams"),
            "streams are required, e.g. [\"orders\"]",
        );
    }
    if let Some(n) = e.max_msg_count_per_read {
        if n < 0 {
            pr.error(
                Problems::at(p, "maxMsgCountPerRead"),
                format!("maxMsgCountPerRead must not be negative, got {n}"),
            );
        }
    }
    check_filter(&e.filter, p, pr);
}

fn emitter(e: &EmitterEventSource, p: &str, pr: &mut Problems) {
    require(&e.broker, p, "broker", "\"tcp://emitter:8080\"", pr);
    require(&e.channel_name, p, "channelName", "\"orders/\"", pr);
    require(
        &e.channel_key,
        p,
        "channelKey",
        "the key granting access to the channel",
        pr,
    );
    check_backoff(&e.connection_backoff, p, pr);
    check_filter(&e.filter, p, pr);
}

fn generic(e: &GenericEventSource, p: &str, pr: &mut Problems) {
    require(&e.url, p, "url", "\"generic-server:8080\" (the gRPC server)", pr);
    require(
        &e.config,
        p,
        "config",
        "the configuration handed to the server",
        pr,
    );
    check_filter(&e.filter, p, pr);
}

fn minio(e: &S3Artifact, p: &str, pr: &mut Problems) {
    require(&e.endpoint, p, "endpoint", "\"minio:9000\"", pr);
    require_some(
        &e.access_key,
        p,
        "accessKey",
        "the Secret key holding the access key",
        pr,
    );
    require_some(
        &e.secret_key,
        p,
        "secretKey",
        "the Secret key holding the secret key",
        pr,
    );
    match &e.bucket {
        Some(b) => require(&b.name, &Problems::at(p, "bucket"), "name", "\"input\"", pr),
        None => pr.error(
            Problems::at(p, "bucket"),
            "bucket is required: the bucket whose notifications to receive",
        ),
    }
    for (i, ev) in e.events.iter().enumerate() {
        if ev.trim().is_empty() {
            pr.error(
                Problems::index(&Problems::at(p, "events"), i),
                "empty event type; use e.g. s3:ObjectCreated:Put",
            );
        }
    }
}

const FILE_OPS: [&str; 5] = ["CREATE", "WRITE", "REMOVE", "RENAME", "CHMOD"];

/// Checks a `|`-separated list of file operations. Returns false when none is known.
fn check_ops(ops: &str, at: &str, pr: &mut Problems) -> bool {
    let mut known = false;
    for op in ops.split('|') {
        if FILE_OPS.contains(&op) {
            known = true;
        } else {
            pr.warning(
                at,
                format!("unknown file operation {op:?}; use CREATE, WRITE, REMOVE, RENAME or CHMOD"),
            );
        }
    }
    known
}

fn file(e: &FileEventSource, p: &str, pr: &mut Problems) {
    if e.event_type.is_empty() {
        pr.error(
            Problems::at(p, "eventType"),
            "eventType is required: CREATE, WRITE, REMOVE, RENAME or CHMOD",
        );
    } else {
        check_ops(&e.event_type, &Problems::at(p, "eventType"), pr);
    }
    match &e.watch_path_config {
        Some(w) => check_watch_path(w, &Problems::at(p, "watchPathConfig"), pr),
        None => pr.error(
            Problems::at(p, "watchPathConfig"),
            "watchPathConfig is required: the directory and files to watch",
        ),
    }
    check_filter(&e.filter, p, pr);
}

fn sftp(e: &SFTPEventSource, p: &str, pr: &mut Problems) {
    match e.event_type.as_str() {
        "CREATE" | "REMOVE" => {}
        "" => pr.error(
            Problems::at(p, "eventType"),
            "eventType is required: CREATE or REMOVE",
        ),
        other => pr.error(
            Problems::at(p, "eventType"),
            format!(
                "eventType {other:?} never fires: polling sees only CREATE (a new or changed file) and REMOVE"
            ),
        ),
    }
    require_some(
        &e.address,
        p,
        "address",
        "the Secret key holding the server's host:port",
        pr,
    );
    require_some(
        &e.username,
        p,
        "username",
        "the Secret key holding the user name",
        pr,
    );
    if e.password.is_none() && e.ssh_key_secret.is_none() {
        pr.error(
            Problems::at(p, "password"),
            "set password or sshKeySecret (the Secret keys holding the password or an SSH private key)",
        );
    }
    match &e.watch_path_config {
        Some(w) => check_watch_path(w, &Problems::at(p, "watchPathConfig"), pr),
        None => pr.error(
            Problems::at(p, "watchPathConfig"),
            "watchPathConfig is required: the directory and files to watch",
        ),
    }
    check_opt_duration(&e.poll_interval_duration, p, "pollIntervalDuration", pr);
    check_filter(&e.filter, p, pr);
}

fn hdfs(e: &HDFSEventSource, p: &str, pr: &mut Problems) {
    let at_type = Problems::at(p, "type");
    if e.type_.is_empty() {
        pr.error(
            at_type,
            "type is required: CREATE, WRITE, REMOVE, RENAME or CHMOD",
        );
    } else if !check_ops(&e.type_, &at_type, pr) {
        pr.error(
            at_type,
            format!("type {:?} names no known file operation", e.type_),
        );
    }
    check_opt_duration(&e.check_interval, p, "checkInterval", pr);
    check_watch_path(&e.watch_path_config, p, pr);
    if e.addresses.is_empty() {
        pr.error(
            Problems::at(p, "addresses"),
            "addresses are required, e.g. [\"namenode:8020\"]",
        );
    }
    let (ccache, keytab) = (e.krb_c_cache_secret.is_some(), e.krb_keytab_secret.is_some());
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if !set(&e.hdfs_user) && !ccache && !keytab {
        pr.error(
            p,
            "set hdfsUser, or krbCCacheSecret or krbKeytabSecret for Kerberos",
        );
    }
    if (ccache || keytab) && (!set(&e.krb_service_principal_name) || e.krb_config_config_map.is_none()) {
        pr.error(p, "Kerberos needs krbServicePrincipalName and krbConfigConfigMap");
    }
    if keytab && (!set(&e.krb_username) || !set(&e.krb_realm)) {
        pr.error(p, "krbKeytabSecret needs krbUsername and krbRealm");
    }
    check_filter(&e.filter, p, pr);
}

fn check_selectors(selectors: &[Selector], at: &str, fields: bool, pr: &mut Problems) {
    for (i, sel) in selectors.iter().enumerate() {
        let at = Problems::index(at, i);
        require(&sel.key, &at, "key", "\"app\"", pr);
        let op = sel.operation.as_deref().unwrap_or("");
        if fields {
            match op {
                "=" | "==" | "!=" => {}
                "" => pr.warning(
                    Problems::at(&at, "operation"),
                    "no operation: Sluice uses ==, but upstream Argo Events drops every object; write operation: ==",
                ),
                other => pr.error(Problems::at(&at, "operation"), format!("field filters support =, == and !=, not {other:?}")),
            }
            check_regex(&sel.value, &Problems::at(&at, "value"), pr);
        } else if !["", "=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"].contains(&op) {
            pr.error(
                Problems::at(&at, "operation"),
                format!("unknown label operation {op:?}; use =, ==, !=, in, notin, exists, !, gt or lt"),
            );
        }
    }
}

fn resource(e: &ResourceEventSource, p: &str, pr: &mut Problems) {
    require(&e.version, p, "version", "\"v1\"", pr);
    require(&e.resource, p, "resource", "\"deployments\"", pr);
    if e.event_types.is_empty() {
        pr.error(
            Problems::at(p, "eventTypes"),
            "eventTypes are required: any of ADD, UPDATE, DELETE",
        );
    }
    for (i, t) in e.event_types.iter().enumerate() {
        if !["ADD", "UPDATE", "DELETE"].contains(&t.as_str()) {
            pr.error(
                Problems::index(&Problems::at(p, "eventTypes"), i),
                format!("unknown event type {t:?}; use ADD, UPDATE or DELETE"),
            );
        }
    }
    if let Some(f) = &e.filter {
        check_selectors(&f.labels, &Problems::at(p, "filter.labels"), false, pr);
        check_selectors(&f.fields, &Problems::at(p, "filter.fields"), true, pr);
    }
}

fn websocket(e: &WebSocketEventSource, p: &str, pr: &mut Problems) {
    let url = e.url.trim();
    if url.is_empty() {
        pr.error(
            Problems::at(p, "url"),
            "url is required, e.g. \"wss://feed.example.com/stream\"",
        );
    } else if !(url.starts_with("ws://") || url.starts_with("wss://")) || url.ends_with("//") {
        pr.error(
            Problems::at(p, "url"),
            format!("url {url:?} must be a ws:// or wss:// URL with a host, e.g. \"wss://feed.example.com/stream\""),
        );
    }
    check_filter(&e.filter, p, pr);
}
