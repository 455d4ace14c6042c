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
        cache_partition_by_credential -> Bool,
    }
}

diesel::table! {
    cache_entries (id) {
        id -> Integer,
        proxy_id -> Integer,
        cache_key -> Text,
        status -> Integer,
        headers -> Text,
        body -> Binary,
        chunks -> Nullable<Text>,
        size_bytes -> BigInt,
        created_at -> Timestamp,
        last_hit_at -> Nullable<Timestamp>,
        hit_count -> BigInt,
    }
}

diesel::joinable!(cache_entries -> proxies (proxy_id));
diesel::allow_tables_to_appear_in_same_query!(cache_entries, proxies);
