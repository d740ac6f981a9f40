//! Token budgets: how many tokens a user may spend per period ([`Budget`]), decided by the
//! app ([`BudgetPolicy`]), counted in the store so that every node sees one figure
//! ([`UsageWindow`], [`UsageLedger`](crate::UsageLedger)).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Identity, StoreError, UsageWindow};

/// How long a budget lasts before it starts again. Periods are fixed windows of UTC time
/// (a day runs from midnight to midnight UTC), so every node agrees on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetPeriod {
    /// 60 seconds.
    Minute,
    /// 60 minutes.
    Hour,
    /// 24 hours, from midnight UTC.
    Day,
    /// 7 days, from Monday midnight UTC.
    Week,
}

impl BudgetPeriod {
    /// The period as the wire spells it (`get_usage.period`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
        }
    }

    /// Its length.
    pub fn length(self) -> Duration {
        Duration::from_secs(match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
            Self::Week => 7 * 86_400,
        })
    }

    /// The window of this period that holds `at_millis` (milliseconds since the Unix epoch).
    pub fn window(self, at_millis: u64) -> UsageWindow {
        let length = self.length().as_millis() as u64;
        // The Unix epoch was a Thursday: weeks are shifted to start on Mondays.
        let offset = if self == Self::Week {
            3 * 86_400_000
        } else {
            0
        };
        let shifted = at_millis + offset;
        let start = (shifted / length * length).saturating_sub(offset);
        UsageWindow {
            start,
            end: start + length,
        }
    }
}

/// A user's token budget: at most `limit` tokens (prompt and completion, as `stream_end.usage`
/// counts them) per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Budget {
    /// Tokens per period.
    pub limit: u64,
    /// The period.
    pub period: BudgetPeriod,
}

impl Budget {
    /// `limit` tokens per `period`.
    pub fn new(limit: u64, period: BudgetPeriod) -> Self {
        Self { limit, period }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, self.period.as_str())
    }
}

/// Why a budget could not be read from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a budget is `<tokens>/<minute|hour|day|week>`, e.g. `50000/day`: {0}")]
pub struct BudgetParseError(String);

/// `"50000/day"`, as `MARIE_TOKEN_BUDGET` gives it.
impl FromStr for Budget {
    type Err = BudgetParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (limit, period) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| BudgetParseError(format!("no `/` in {text:?}")))?;
        let limit = limit
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|e| BudgetParseError(format!("{limit:?}: {e}")))?;
        let period = match period.trim() {
            "minute" => BudgetPeriod::Minute,
            "hour" => BudgetPeriod::Hour,
            "day" => BudgetPeriod::Day,
            "week" => BudgetPeriod::Week,
            other => return Err(BudgetParseError(format!("unknown period {other:?}"))),
        };
        Ok(Self { limit, period })
    }
}

/// Decides each user's token budget; `None`: no budget, nothing counted.
///
/// Asked before every answer is started. A fixed [`Budget`] is a policy that gives every
/// user that budget; [`budget_fn`] makes one from a closure.
#[async_trait]
pub trait BudgetPolicy: Send + Sync + 'static {
    /// The budget of `who`, if they have one.
    async fn budget(&self, who: &Identity) -> Result<Option<Budget>, StoreError>;
}

#[async_trait]
impl<T: BudgetPolicy + ?Sized> BudgetPolicy for std::sync::Arc<T> {
    async fn budget(&self, who: &Identity) -> Result<Option<Budget>, StoreError> {
        (**self).budget(who).await
    }
}

/// The same budget for everyone.
#[async_trait]
impl BudgetPolicy for Budget {
    async fn budget(&self, _who: &Identity) -> Result<Option<Budget>, StoreError> {
        Ok(Some(*self))
    }
}

/// A [`BudgetPolicy`] made from a closure.
///
/// ```
/// use marie_core::{Budget, BudgetPeriod, budget_fn};
///
/// // Admins are not limited; everyone else has 50,000 tokens a day.
/// let policy = budget_fn(|who| (!who.is_admin()).then(|| Budget::new(50_000, BudgetPeriod::Day)));
/// # let _ = policy;
/// ```
pub fn budget_fn<F>(f: F) -> BudgetFn<F>
where
    F: Fn(&Identity) -> Option<Budget> + Send + Sync + 'static,
{
    BudgetFn(f)
}

/// The [`BudgetPolicy`] returned by [`budget_fn`].
#[derive(Clone, Copy, Debug)]
pub struct BudgetFn<F>(F);

#[async_trait]
impl<F> BudgetPolicy for BudgetFn<F>
where
    F: Fn(&Identity) -> Option<Budget> + Send + Sync + 'static,
{
    async fn budget(&self, who: &Identity) -> Result<Option<Budget>, StoreError> {
        Ok((self.0)(who))
    }
}

/// A user's figures, as `get_usage` answers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Tokens used in the current period (0 without a budget: nothing is counted).
    pub used: u64,
    /// The budget's limit; `None` without a budget.
    pub limit: Option<u64>,
    /// The budget's period; `None` without a budget.
    pub period: Option<BudgetPeriod>,
    /// When the current period ends (milliseconds since the Unix epoch); `None` without a
    /// budget.
    pub resets_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_print() {
        let budget: Budget = "50_000/day".parse().unwrap();
        assert_eq!(budget, Budget::new(50_000, BudgetPeriod::Day));
        assert_eq!(budget.to_string(), "50000/day");
        assert_eq!(
            " 10 / hour ".parse::<Budget>(),
            Ok(Budget::new(10, BudgetPeriod::Hour))
        );
        for bad in ["", "50000", "x/day", "-1/day", "10/fortnight"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_fixed_utc_periods() {
        // 2026-12-02 06:00:00 UTC, a Wednesday.
        let now = 1_796_191_200_000;
        let day = BudgetPeriod::Day.window(now);
        assert_eq!(day.start, 1_796_169_600_000, "midnight UTC");
        assert_eq!(day.end - day.start, 86_400_000);
        let week = BudgetPeriod::Week.window(now);
        assert_eq!(
            week.start, 1_795_996_800_000,
            "Monday 2026-11-30, midnight UTC"
        );
        assert!(week.start <= now && now < week.end);
        let hour = BudgetPeriod::Hour.window(now);
        assert_eq!((hour.start, hour.end), (now, now + 3_600_000));
        assert_eq!(BudgetPeriod::Minute.window(59_999).start, 0);
    }
}
