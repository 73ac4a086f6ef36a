//! Library messages name what they ask for by the library's own options (`Hint`); the CLI
//! shows its users the flag instead.

use immich_integrity::{Finding, Hint, Summary};

/// The command-line spelling of a hint.
pub(crate) fn flag(h: Hint) -> &'static str {
    match h {
        Hint::MediaRoot => "--media-root",
        Hint::Maps => "--map",
        Hint::DbUrl => "--db-url",
        Hint::EnvFile => "--env-file",
        Hint::AsUser => "--as-user",
        Hint::Shard => "--shard",
        Hint::Since => "--since",
        Hint::IncludeTrashed => "--include-trashed",
        Hint::Manifest => "--manifest",
        Hint::Level => "--level",
        Hint::Server => "--server",
        Hint::ApiKey => "--api-key",
        Hint::Scan => "`immich-integrity scan`",
        Hint::RelinkApply => "`immich-integrity relink --apply`",
        Hint::MediaLocation => "--media-location",
        Hint::Jobs => "--jobs",
        Hint::Filters => "--owner, --library, --kind, --limit and --since",
        other => other.name(),
    }
}

/// A library message as the CLI shows it.
pub(crate) fn render(text: &str) -> String {
    Hint::render(text, flag)
}

/// A finding with its detail rendered.
pub(crate) fn finding(f: &Finding) -> Finding {
    Finding {
        detail: render(&f.detail),
        ..f.clone()
    }
}

/// A summary with the reason of a failed run rendered.
pub(crate) fn summary(s: &Summary) -> Summary {
    let mut s = s.clone();
    if let immich_integrity::Completion::Failed(why) = &mut s.completion {
        *why = render(why);
    }
    s
}
