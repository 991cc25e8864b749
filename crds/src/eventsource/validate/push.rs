//! Field rules of the push kinds: the plain webhook and the services that deliver to one
//! (GitHub, GitLab, Bitbucket, Bitbucket Server, Gerrit, Slack, Stripe, SNS, StorageGRID).

use super::super::{
    BitbucketEventSource, BitbucketServerEventSource, GerritEventSource, GithubEventSource,
    GitlabEventSource, SNSEventSource, SlackEventSource, StorageGridEventSource, StripeEventSource,
    WebhookContext, WebhookEventSource,
};
use super::{
    check_basic_auth, check_filter, check_opt_duration, check_webhook_context, require, require_some,
};
use crate::validate::Problems;

/// A push kind's `webhook` block: required, then checked.
pub(super) fn push_webhook(ctx: &Option<WebhookContext>, p: &str, pr: &mut Problems) {
    match ctx {
        Some(ctx) => check_webhook_context(ctx, &Problems::at(p, "webhook"), false, pr),
        None => pr.error(
            Problems::at(p, "webhook"),
            "webhook is required: the endpoint, port and method the remote service delivers to",
        ),
    }
}

pub(super) fn webhook(e: &WebhookEventSource, p: &str, pr: &mut Problems) {
    check_webhook_context(&e.webhook_context, p, true, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn github(e: &GithubEventSource, p: &str, pr: &mut Problems) {
    let deprecated_repo = e.owner.as_deref().is_some_and(|o| !o.is_empty())
        && e.repository.as_deref().is_some_and(|r| !r.is_empty());
    let has_repos = !e.repositories.is_empty() || deprecated_repo;
    match (has_repos, !e.organizations.is_empty()) {
        (false, false) => pr.error(p, "set repositories (owner and names) or organizations"),
        (true, true) => pr.error(
            Problems::at(p, "organizations"),
            "set either repositories or organizations, not both",
        ),
        _ => {}
    }
    for (i, r) in e.repositories.iter().enumerate() {
        let at = Problems::index(&Problems::at(p, "repositories"), i);
        require(r.owner.as_deref().unwrap_or(""), &at, "owner", "\"argoproj\"", pr);
        if r.names.is_empty() {
            pr.error(
                Problems::at(&at, "names"),
                "names is required: at least one repository of this owner",
            );
        }
    }
    let creates_hooks = (e.api_token.is_some()
        || e.github_app.as_ref().is_some_and(|a| a.private_key.is_some()))
        && e.webhook.as_ref().is_some_and(|w| !w.url.is_empty());
    if creates_hooks && e.events.is_empty() {
        pr.error(
            Problems::at(p, "events"),
            "events are required to create the hook, e.g. [\"push\"] or [\"*\"]",
        );
    }
    if let Some(ct) = &e.content_type {
        if !ct.is_empty() && ct != "json" && ct != "form" {
            pr.error(
                Problems::at(p, "contentType"),
                format!("contentType must be \"json\" or \"form\", got {ct:?}"),
            );
        }
    }
    let base = e.github_base_url.as_deref().is_some_and(|s| !s.is_empty());
    let upload = e.github_upload_url.as_deref().is_some_and(|s| !s.is_empty());
    if base != upload {
        let (missing, given) = if base {
            ("githubUploadURL", "githubBaseURL")
        } else {
            ("githubBaseURL", "githubUploadURL")
        };
        pr.error(
            Problems::at(p, missing),
            format!("{missing} is required when {given} is set (GitHub Enterprise needs both)"),
        );
    }
    if let Some(app) = &e.github_app {
        let at = Problems::at(p, "githubApp");
        require_some(
            &app.private_key,
            &at,
            "privateKey",
            "the Secret key holding the app's private key",
            pr,
        );
        if app.app_id <= 0 {
            pr.error(
                Problems::at(&at, "appID"),
                "appID is required: the numeric id of the GitHub App",
            );
        }
        if app.installation_id <= 0 {
            pr.error(
                Problems::at(&at, "installationID"),
                "installationID is required: the numeric id of the app's installation",
            );
        }
    }
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn gitlab(e: &GitlabEventSource, p: &str, pr: &mut Problems) {
    // Upstream always manages the hook, so it requires events, gitlabBaseURL and accessToken.
    // Sluice also receives from a hook registered by hand (no accessToken or no webhook.url), and
    // then needs none of them: they are required only to manage the hook.
    let manages_hook = e.access_token.is_some() && e.webhook.as_ref().is_some_and(|w| !w.url.is_empty());
    if manages_hook {
        if e.events.is_empty() {
            pr.error(
                Problems::at(p, "events"),
                "events are required to create the hook, e.g. [\"PushEvents\"]",
            );
        }
        require(
            &e.gitlab_base_url,
            p,
            "gitlabBaseURL",
            "\"https://gitlab.com\"",
            pr,
        );
    }
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn bitbucket(e: &BitbucketEventSource, p: &str, pr: &mut Problems) {
    let deprecated = e.owner.as_deref().is_some_and(|o| !o.is_empty())
        && e.repository_slug.as_deref().is_some_and(|r| !r.is_empty());
    if e.repositories.is_empty() && !deprecated {
        pr.error(
            Problems::at(p, "repositories"),
            "at least one repository (owner and repositorySlug) is required",
        );
    }
    let has_auth = e
        .auth
        .as_ref()
        .is_some_and(|a| a.basic.is_some() || a.oauth_token.is_some());
    if has_auth && e.webhook.as_ref().is_some_and(|w| !w.url.is_empty()) && e.events.is_empty() {
        pr.error(
            Problems::at(p, "events"),
            "events are required to create the hook, e.g. [\"repo:push\"]",
        );
    }
    if let Some(basic) = e.auth.as_ref().and_then(|a| a.basic.as_ref()) {
        let at = Problems::at(p, "auth.basic");
        require_some(
            &basic.username,
            &at,
            "username",
            "the Secret key holding the user name",
            pr,
        );
        require_some(
            &basic.password,
            &at,
            "password",
            "the Secret key holding the app password",
            pr,
        );
    }
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn bitbucket_server(e: &BitbucketServerEventSource, p: &str, pr: &mut Problems) {
    let deprecated = e.project_key.as_deref().is_some_and(|o| !o.is_empty())
        && e.repository_slug.as_deref().is_some_and(|r| !r.is_empty());
    let has_targets = !e.repositories.is_empty() || deprecated || !e.projects.is_empty();
    let creates_hooks =
        e.access_token.is_some() && e.webhook.as_ref().is_some_and(|w| !w.url.is_empty()) && has_targets;
    if creates_hooks && e.events.is_empty() {
        pr.error(
            Problems::at(p, "events"),
            "events are required to create the hook, e.g. [\"repo:refs_changed\"]",
        );
    }
    require(
        &e.bitbucketserver_base_url,
        p,
        "bitbucketserverBaseURL",
        "\"https://bitbucket.example.com/rest\"",
        pr,
    );
    check_opt_duration(&e.check_interval, p, "checkInterval", pr);
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn gerrit(e: &GerritEventSource, p: &str, pr: &mut Problems) {
    if e.projects.is_empty() {
        pr.error(
            Problems::at(p, "projects"),
            "projects are required, e.g. [\"team/repo\"]",
        );
    }
    if e.events.is_empty() {
        pr.error(
            Problems::at(p, "events"),
            "events are required, e.g. [\"patchset-created\"]",
        );
    }
    require(
        &e.gerrit_base_url,
        p,
        "gerritBaseURL",
        "\"https://gerrit.example.com\"",
        pr,
    );
    require_some(
        &e.auth,
        p,
        "auth",
        "user name and password for the Gerrit API",
        pr,
    );
    check_basic_auth(&e.auth, p, pr);
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn slack(e: &SlackEventSource, p: &str, pr: &mut Problems) {
    require_some(
        &e.token,
        p,
        "token",
        "the Secret key holding the app's verification token",
        pr,
    );
    if e.signing_secret.is_none() {
        pr.warning(
            Problems::at(p, "signingSecret"),
            "no signingSecret: requests are not verified, so anyone who can reach the endpoint can forge events",
        );
    }
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn stripe(e: &StripeEventSource, p: &str, pr: &mut Problems) {
    if e.create_webhook {
        require_some(
            &e.api_key,
            p,
            "apiKey",
            "createWebhook needs the Secret key holding the Stripe API key",
            pr,
        );
    }
    push_webhook(&e.webhook, p, pr);
}

pub(super) fn sns(e: &SNSEventSource, p: &str, pr: &mut Problems) {
    require(
        &e.topic_arn,
        p,
        "topicArn",
        "\"arn:aws:sns:us-east-1:123456789012:my-topic\"",
        pr,
    );
    require(&e.region, p, "region", "\"us-east-1\"", pr);
    if e.access_key.is_some() != e.secret_key.is_some() {
        pr.error(
            p,
            "set both accessKey and secretKey, or neither (to use the AWS default credential chain)",
        );
    }
    if let Some(wh) = &e.webhook {
        if wh.url.trim().is_empty() {
            pr.warning(
                Problems::at(&Problems::at(p, "webhook"), "url"),
                "no webhook.url: Sluice subscribes nothing to the topic; subscribe the endpoint yourself",
            );
        } else if !wh.url.starts_with("http://") && !wh.url.starts_with("https://") {
            pr.error(
                Problems::at(&Problems::at(p, "webhook"), "url"),
                format!(
                    "webhook.url {:?} must be an http:// or https:// URL SNS can reach",
                    wh.url
                ),
            );
        }
    }
    push_webhook(&e.webhook, p, pr);
    check_filter(&e.filter, p, pr);
}

pub(super) fn storage_grid(e: &StorageGridEventSource, p: &str, pr: &mut Problems) {
    require(
        &e.topic_arn,
        p,
        "topicArn",
        "\"arn:aws:sns:us-east-1:123456789012:my-topic\"",
        pr,
    );
    require(
        &e.api_url,
        p,
        "apiURL",
        "\"https://storagegrid.example.com/api/v3\"",
        pr,
    );
    require_some(
        &e.auth_token,
        p,
        "authToken",
        "the Secret key holding the StorageGRID API token",
        pr,
    );
    require(&e.bucket, p, "bucket", "\"my-bucket\"", pr);
    if e.events.is_empty() {
        pr.error(
            Problems::at(p, "events"),
            "events are required, e.g. [\"ObjectCreated:*\"]",
        );
    }
    push_webhook(&e.webhook, p, pr);
}
