//! `vigilctl customers set`: the flags that change a contract, applied to the contract the
//! collector returned, which is then sent back whole (the collector validates it and names
//! the field that is wrong). Pure, so each flag's effect is tested without a collector; and
//! the text view of a contract for `vigilctl customers show`.

use serde_json::{Value, json};

use super::CtlError;

/// What `customers set` may change; unset flags leave the contract as it is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ContractFlags {
    /// IANA time zone of the customer, like Europe/Berlin.
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Response target of a level, like L1=10m (repeatable).
    #[arg(long = "response", value_name = "LEVEL=DURATION")]
    pub response: Vec<String>,
    /// Resolution target of a level, like L2=8h (repeatable).
    #[arg(long = "resolution", value_name = "LEVEL=DURATION")]
    pub resolution: Vec<String>,
    /// Support hours of a level: L4=always, or L4=mon-fri/08:00-18:00, or
    /// L3=mon,tue,wed/09:00-17:00 (repeatable).
    #[arg(long = "hours", value_name = "LEVEL=HOURS")]
    pub hours: Vec<String>,
    /// Holidays without business-hours support, comma-separated local dates; replaces the
    /// list ("" clears it).
    #[arg(long, value_name = "DATES")]
    pub holidays: Option<String>,
    /// Receivers of a support tier: 1=ops-am or 2=ops-am:team=storage,pager-hook; replaces
    /// that tier's list ("2=" clears it) (repeatable).
    #[arg(long = "tier", value_name = "TIER=RECEIVERS")]
    pub tiers: Vec<String>,
    /// Share of a deadline at which a warning goes out, like 0.8.
    #[arg(long)]
    pub warn_at: Option<f64>,
}

fn usage(message: String) -> CtlError {
    CtlError::Usage(message)
}

fn split_eq<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str), CtlError> {
    text.split_once('=').ok_or_else(|| usage(format!("--{flag} {text:?}: expected KEY=VALUE")))
}

fn level_key(flag: &str, text: &str) -> Result<String, CtlError> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "L1" | "L2" | "L3" | "L4" => Ok(upper),
        _ => Err(usage(format!("--{flag}: level {text:?} must be L1, L2, L3 or L4"))),
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `always`, or `mon-fri/08:00-18:00`, or `mon,wed/09:00-17:00`.
fn parse_hours(text: &str) -> Result<Value, CtlError> {
    if text == "always" || text == "24x7" {
        return Ok(json!({ "kind": "always" }));
    }
    let bad = || {
        usage(format!(
            "--hours {text:?}: expected always, or days/HH:MM-HH:MM like mon-fri/08:00-18:00"
        ))
    };
    let (days, times) = text.split_once('/').ok_or_else(bad)?;
    let (start, end) = times.split_once('-').ok_or_else(bad)?;
    let mut list = Vec::new();
    for part in days.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let a = DAYS.iter().position(|d| *d == a).ok_or_else(bad)?;
                let b = DAYS.iter().position(|d| *d == b).ok_or_else(bad)?;
                if a > b {
                    return Err(bad());
                }
                list.extend(DAYS[a..=b].iter().map(|d| (*d).to_owned()));
            }
            None => list.push(DAYS.iter().find(|d| **d == part).ok_or_else(bad)?.to_string()),
        }
    }
    Ok(json!({ "kind": "business_hours", "days": list, "start": start, "end": end }))
}

/// `ops-am:team=storage,pager-hook` → receiver refs.
fn parse_receivers(text: &str) -> Result<Value, CtlError> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let mut pieces = part.split(':');
        let name = pieces.next().unwrap_or_default();
        let mut labels = serde_json::Map::new();
        for label in pieces {
            let (k, v) = split_eq("tier", label)?;
            labels.insert(k.to_owned(), json!(v));
        }
        out.push(json!({ "receiver": name, "labels": labels }));
    }
    Ok(Value::Array(out))
}

/// Applies `flags` to `contract` (the JSON the collector returned).
pub fn apply(mut contract: Value, flags: &ContractFlags) -> Result<Value, CtlError> {
    if let Some(tz) = &flags.time_zone {
        contract["time_zone"] = json!(tz);
    }
    if let Some(warn_at) = flags.warn_at {
        contract["warn_at"] = json!(warn_at);
    }
    if let Some(holidays) = &flags.holidays {
        let list: Vec<&str> =
            holidays.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
        contract["holidays"] = json!(list);
    }
    for (flag, list, field) in
        [("response", &flags.response, "response"), ("resolution", &flags.resolution, "resolution")]
    {
        for item in list {
            let (level, duration) = split_eq(flag, item)?;
            humantime::parse_duration(duration).map_err(|e| {
                usage(format!("--{flag} {item:?}: {duration:?} is not a duration like 15m: {e}"))
            })?;
            contract["levels"][level_key(flag, level)?][field] = json!(duration);
        }
    }
    for item in &flags.hours {
        let (level, hours) = split_eq("hours", item)?;
        contract["levels"][level_key("hours", level)?]["hours"] = parse_hours(hours)?;
    }
    for item in &flags.tiers {
        let (tier, receivers) = split_eq("tier", item)?;
        if !matches!(tier, "1" | "2" | "3") {
            return Err(usage(format!("--tier {item:?}: tier must be 1, 2 or 3")));
        }
        contract["tiers"][tier] = parse_receivers(receivers)?;
    }
    Ok(contract)
}

/// The text view of `GET /api/v1/customers/<name>/contract`.
pub fn render(v: &Value) -> String {
    let c = &v["contract"];
    let s = |v: &Value| match v {
        Value::Null => "null".to_owned(),
        other => super::cell(other),
    };
    let mut out = format!(
        "customer {}{}\ntime zone {}, warning at {} of a deadline\n",
        s(&v["customer"]),
        if v["default"].as_bool() == Some(true) { " (default contract)" } else { "" },
        s(&c["time_zone"]),
        s(&c["warn_at"]),
    );
    out.push_str("\nLEVEL  RESPONSE  RESOLUTION  HOURS\n");
    for level in ["L1", "L2", "L3", "L4"] {
        let t = &c["levels"][level];
        let hours = match t["hours"]["kind"].as_str() {
            Some("business_hours") => format!(
                "{} {}-{}",
                t["hours"]["days"]
                    .as_array()
                    .map(|d| d.iter().map(s).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
                s(&t["hours"]["start"]),
                s(&t["hours"]["end"])
            ),
            _ => "always (24x7)".to_owned(),
        };
        out.push_str(&format!(
            "{level:<6} {:<9} {:<11} {hours}\n",
            s(&t["response"]),
            s(&t["resolution"])
        ));
    }
    let holidays = c["holidays"].as_array().map(|h| h.iter().map(s).collect::<Vec<_>>());
    out.push_str(&format!(
        "\nholidays: {}\n",
        holidays.filter(|h| !h.is_empty()).map(|h| h.join(", ")).unwrap_or_else(|| "none".into())
    ));
    for tier in ["1", "2", "3"] {
        let receivers = c["tiers"][tier]
            .as_array()
            .map(|r| r.iter().map(|r| s(&r["receiver"])).collect::<Vec<_>>().join(", "))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "(collector's default receivers)".into());
        out.push_str(&format!("tier {tier}: {receivers}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_change_only_what_they_name() {
        let contract = json!({"time_zone": "UTC", "warn_at": 0.8, "holidays": [],
            "levels": {"L1": {"response": "5m", "resolution": "4h", "hours": {"kind": "always"}}},
            "tiers": {}});
        let flags = ContractFlags {
            time_zone: Some("Europe/Berlin".into()),
            response: vec!["l1=10m".into()],
            hours: vec!["L4=mon-fri/08:00-18:00".into()],
            holidays: Some("2026-12-24, 2026-12-25".into()),
            tiers: vec!["2=ops:team=storage,hook".into()],
            ..ContractFlags::default()
        };
        let out = apply(contract, &flags).unwrap();
        assert_eq!(out["time_zone"], "Europe/Berlin");
        assert_eq!(out["levels"]["L1"]["response"], "10m");
        assert_eq!(out["levels"]["L1"]["resolution"], "4h");
        assert_eq!(
            out["levels"]["L4"]["hours"],
            json!({"kind": "business_hours", "days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00"})
        );
        assert_eq!(out["holidays"], json!(["2026-12-24", "2026-12-25"]));
        assert_eq!(
            out["tiers"]["2"],
            json!([{"receiver": "ops", "labels": {"team": "storage"}}, {"receiver": "hook", "labels": {}}])
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let err = |flags: ContractFlags| apply(json!({}), &flags).unwrap_err().to_string();
        assert!(
            err(ContractFlags { response: vec!["L5=1m".into()], ..Default::default() })
                .contains("level \"L5\" must be L1, L2, L3 or L4")
        );
        assert!(
            err(ContractFlags { response: vec!["L1=soon".into()], ..Default::default() })
                .contains("\"soon\" is not a duration")
        );
        assert!(
            err(ContractFlags { hours: vec!["L4=weekdays".into()], ..Default::default() })
                .contains("expected always, or days/HH:MM-HH:MM")
        );
        assert!(
            err(ContractFlags { tiers: vec!["4=ops".into()], ..Default::default() })
                .contains("tier must be 1, 2 or 3")
        );
    }
}
