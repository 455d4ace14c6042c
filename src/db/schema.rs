// The Diesel schema, kept in step with `migrations/` by hand.

diesel::table! {
    proxies (id) {
        id -> Integer,
        name -> Text,
        provider -> Text,
        port -> Integer,
        description -> Text,
        tags -> Text,
        upstream_url -> Nullable<Text>,
        desired_state -> Text,
        last_error -> Nullable<Text>,
        failure_config -> Text,
        cache_enabled -> Bool,
        cache_mode -> Text,
        cache_ttl_seconds -> Nullable<BigInt>,
        vertex_service_account_file -> Nullable<Text>,
        aws_region -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}
