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
        owner_id -> Nullable<Integer>,
        log_requests -> Bool,
        emulator_ttft_ms -> Integer,
        emulator_tokens_per_second -> Integer,
        cache_fixtures_dir -> Nullable<Text>,
        declared_in -> Nullable<Text>,
        cache_ignore_fields -> Text,
        cache_stream_replay -> Text,
        daily_spend_cap_usd -> Nullable<Double>,
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
        last_used_at -> Timestamp,
        recording -> Nullable<Text>,
    }
}

diesel::table! {
    request_logs (id) {
        id -> Integer,
        timestamp -> BigInt,
        proxy_id -> Integer,
        proxy_name -> Text,
        provider -> Text,
        method -> Text,
        path -> Text,
        model -> Nullable<Text>,
        client_ip -> Text,
        status -> Integer,
        latency_ms -> Double,
        upstream_latency_ms -> Nullable<Double>,
        cache -> Text,
        failure -> Nullable<Text>,
        stream -> Bool,
        request_bytes -> BigInt,
        response_bytes -> BigInt,
        input_tokens -> Nullable<BigInt>,
        output_tokens -> Nullable<BigInt>,
        cost_usd -> Nullable<Double>,
        prompt_hash -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        error_message -> Nullable<Text>,
        scenario -> Nullable<Text>,
    }
}

diesel::table! {
    metric_rollups (proxy_id, minute) {
        proxy_id -> Integer,
        minute -> Timestamp,
        requests -> BigInt,
        errors -> BigInt,
        cache_hits -> BigInt,
        injected_failures -> BigInt,
        upstream_failures -> BigInt,
        latency_sum_ms -> Double,
        latency_histogram -> Text,
        input_tokens -> BigInt,
        output_tokens -> BigInt,
        cost_usd -> Double,
        saved_usd -> Double,
    }
}

diesel::table! {
    users (id) {
        id -> Integer,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Integer,
        token_hash -> Text,
        user_id -> Integer,
        csrf_token -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Integer,
        user_id -> Integer,
        name -> Text,
        token_hash -> Text,
        prefix -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    deleted_proxies (id) {
        id -> Integer,
        owner_id -> Integer,
        name -> Text,
        deleted_at -> Timestamp,
    }
}

diesel::joinable!(cache_entries -> proxies (proxy_id));
diesel::joinable!(deleted_proxies -> users (owner_id));
diesel::joinable!(proxies -> users (owner_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    cache_entries,
    deleted_proxies,
    metric_rollups,
    proxies,
    request_logs,
    sessions,
    settings,
    users
);
