//! Token prices, from the data file `prices.json` beside this module.

use std::collections::BTreeMap;

const PRICES: &str = include_str!("prices.json");

pub struct PriceTable {
    /// Model id → USD per million (input, output) tokens.
    prices: BTreeMap<String, (f64, f64)>,
}

impl PriceTable {
    pub fn bundled() -> Self {
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(PRICES).unwrap_or_default();
        let prices = raw
            .into_iter()
            .filter_map(|(model, price)| {
                let pair: (f64, f64) = serde_json::from_value(price).ok()?;
                Some((model, pair))
            })
            .collect();
        PriceTable { prices }
    }

    /// Exact id, else the longest known prefix (`gpt-4o-2024-08-06` is `gpt-4o`; Bedrock ids
    /// such as `anthropic.claude-3-haiku-20240307-v1:0` are their family).
    fn price(&self, model: &str) -> Option<(f64, f64)> {
        let model = model.rsplit('/').next().unwrap_or(model);
        self.prices.get(model).copied().or_else(|| {
            self.prices
                .iter()
                .filter(|(known, _)| model.starts_with(known.as_str()))
                .max_by_key(|(known, _)| known.len())
                .map(|(_, price)| *price)
        })
    }

    /// USD for a request; `None` for an unknown model or when the response said no tokens.
    pub fn cost(
        &self,
        model: Option<&str>,
        input: Option<u64>,
        output: Option<u64>,
    ) -> Option<f64> {
        let (input_price, output_price) = self.price(model?)?;
        if input.is_none() && output.is_none() {
            return None;
        }
        let tokens = |n: Option<u64>| n.unwrap_or(0) as f64;
        Some((tokens(input) * input_price + tokens(output) * output_price) / 1_000_000.0)
    }
}

/// An amount in US dollars: cents from a dollar up, else three significant digits, because test
/// traffic costs fractions of a cent, which "0.0000" would hide.
pub fn usd(value: f64) -> String {
    if value >= 1.0 || value <= 0.0 {
        return format!("{value:.2}");
    }
    let decimals = (-value.log10()).ceil() as usize + 2;
    format!("{value:.decimals$}")
}

/// An amount someone set (a spend cap) in US dollars, every digit of it, cents at least.
pub fn usd_as_set(value: f64) -> String {
    let text = value.to_string();
    match text.split_once('.') {
        None => format!("{text}.00"),
        Some((_, decimals)) if decimals.len() < 2 => format!("{text}0"),
        Some(_) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_three_significant_digits_below_a_dollar() {
        assert_eq!(usd(0.0), "0.00");
        assert_eq!(usd(12.345), "12.35");
        assert_eq!(usd(0.5), "0.500");
        assert_eq!(usd(0.0123), "0.0123");
        assert_eq!(usd(0.00999), "0.00999");
        assert_eq!(usd(0.00000585), "0.00000585");
    }

    #[test]
    fn amounts_as_set_keep_their_digits() {
        assert_eq!(usd_as_set(5.0), "5.00");
        assert_eq!(usd_as_set(1.5), "1.50");
        assert_eq!(usd_as_set(0.07), "0.07");
        assert_eq!(usd_as_set(0.000005), "0.000005");
        assert_eq!(usd_as_set(0.0), "0.00");
        assert_eq!(usd_as_set(1_000_000.0), "1000000.00");
    }

    #[test]
    fn known_models_dated_ids_and_unknown_ones() {
        let table = PriceTable::bundled();
        assert_eq!(
            table.cost(Some("gpt-4o-mini"), Some(1_000_000), Some(0)),
            Some(0.15)
        );
        assert_eq!(
            table.cost(Some("gpt-4o-2024-08-06"), Some(0), Some(1_000_000)),
            Some(10.0)
        );
        assert_eq!(
            table.cost(Some("gpt-4o-mini-2024-07-18"), Some(1_000_000), None),
            Some(0.15),
            "longest prefix wins"
        );
        assert_eq!(
            table.cost(
                Some("publishers/google/models/gemini-2.0-flash"),
                Some(1_000_000),
                None
            ),
            Some(0.1)
        );
        assert_eq!(
            table.cost(Some("my-local-llama"), Some(10), Some(10)),
            None,
            "unknown is no cost, not zero"
        );
        assert_eq!(table.cost(None, Some(10), Some(10)), None);
        assert_eq!(table.cost(Some("gpt-4o"), None, None), None);
    }
}
