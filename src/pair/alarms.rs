//! A stage's alarms: what a pair's figures say went wrong, raised once per episode. An episode
//! begins at the first pair of a stage with the alarm and ends at the first pair without it;
//! a delay jump is measured from the stage's previous pair whose POST was recognisably PRE.
//! Pure: the element keeps one [`StageWatch`] per stage across the pairs it compares, and the
//! offline programs one per stage across the buckets they read, in bucket order.

use super::{Alignment, Figures};

/// A delay that moves by more than this from one pair of a stage to the next is a jump.
pub const DELAY_TOLERANCE_MS: f64 = 10.0;

/// Below this correlation POST is not recognisably PRE: its delay means nothing, and is not
/// compared with the stage's previous one.
pub const MIN_CORRELATION: f64 = 0.5;

/// An alarm a pair raises for its stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alarm {
    /// PRE has voice, POST stays under the silence threshold.
    Muted,
    /// The stage's delay moved by more than [`DELAY_TOLERANCE_MS`].
    DelayJumped {
        /// The delay of the stage's previous recognisable pair, in ms.
        from_ms: f64,
        /// The delay now, in ms.
        to_ms: f64,
    },
    /// POST has samples at full scale where PRE had none.
    Clips {
        /// POST's samples at full scale.
        samples: u64,
    },
}

impl Alarm {
    /// The alarm's name in messages and in the programs' output: `muted`, `delay-jumped` or
    /// `clips`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Alarm::Muted => "muted",
            Alarm::DelayJumped { .. } => "delay-jumped",
            Alarm::Clips { .. } => "clips",
        }
    }
}

/// What a stage did in its pairs so far, for its alarms.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct StageWatch {
    /// The delay of the last pair whose correlation was at least [`MIN_CORRELATION`].
    delay_ms: Option<f64>,
    muted: bool,
    clipping: bool,
}

impl StageWatch {
    /// Takes the stage's next pair: the alarms whose episode it begins.
    pub fn observe(&mut self, figures: &Figures) -> Vec<Alarm> {
        let mut alarms = Vec::new();
        // POST is under the silence threshold; PRE may be too (a threshold set above the
        // voice level), but if it has voice, the stage silenced it.
        let muted = matches!(
            figures.alignment,
            Alignment::PostSilent | Alignment::BothSilent
        ) && figures.pre_voiced_ratio > 0.0;
        if muted && !self.muted {
            alarms.push(Alarm::Muted);
        }
        self.muted = muted;
        let clipping = figures.stage_clips();
        if clipping && !self.clipping {
            alarms.push(Alarm::Clips {
                samples: figures.post_clipped_samples,
            });
        }
        self.clipping = clipping;
        if figures.alignment == Alignment::Measured && figures.correlation >= MIN_CORRELATION {
            if let Some(from_ms) = self.delay_ms
                && (figures.delay_ms - from_ms).abs() > DELAY_TOLERANCE_MS
            {
                alarms.push(Alarm::DelayJumped {
                    from_ms,
                    to_ms: figures.delay_ms,
                });
            }
            self.delay_ms = Some(figures.delay_ms);
        }
        alarms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(delay_ms: f64, correlation: f64) -> Figures {
        Figures {
            alignment: Alignment::Measured,
            delay: (delay_ms * 16.0) as i64,
            delay_ms,
            correlation,
            gain_db: 0.0,
            pre_rms_dbfs: -20.0,
            post_rms_dbfs: -20.0,
            pre_voiced_ratio: 0.5,
            post_voiced_ratio: 0.5,
            pre_clipped_samples: 0,
            post_clipped_samples: 0,
        }
    }

    #[test]
    fn alarms_begin_episodes_and_a_delay_jump_is_measured_from_the_last_recognisable_pair() {
        let mut stage = StageWatch::default();
        assert!(stage.observe(&figures(20.0, 0.9)).is_empty());
        assert!(stage.observe(&figures(25.0, 0.9)).is_empty());
        // Unrecognisable: its delay is no reference.
        assert!(stage.observe(&figures(300.0, 0.2)).is_empty());
        assert_eq!(
            stage.observe(&figures(60.0, 0.9)),
            [Alarm::DelayJumped {
                from_ms: 25.0,
                to_ms: 60.0
            }]
        );
        assert!(stage.observe(&figures(60.0, 0.9)).is_empty());
        let muted = Figures {
            alignment: Alignment::PostSilent,
            ..figures(0.0, 0.0)
        };
        assert_eq!(stage.observe(&muted), [Alarm::Muted]);
        assert!(stage.observe(&muted).is_empty());
        let clipping = Figures {
            post_clipped_samples: 12,
            ..figures(60.0, 0.9)
        };
        assert_eq!(stage.observe(&clipping), [Alarm::Clips { samples: 12 }]);
        assert!(stage.observe(&clipping).is_empty());
        // Each episode ends at the first pair without it, and a new one alarms again.
        assert!(stage.observe(&figures(60.0, 0.9)).is_empty());
        assert_eq!(stage.observe(&muted), [Alarm::Muted]);
        // A silent stage fed silence is no muting.
        let both_silent = Figures {
            alignment: Alignment::BothSilent,
            pre_voiced_ratio: 0.0,
            ..figures(0.0, 0.0)
        };
        assert!(stage.observe(&both_silent).is_empty());
        // A silence threshold above the voice level: PRE voiced but under it, POST silent.
        let above_voice = Figures {
            alignment: Alignment::BothSilent,
            ..figures(0.0, 0.0)
        };
        assert_eq!(stage.observe(&above_voice), [Alarm::Muted]);
        // Clipping that PRE already had is not the stage's.
        let passed_on = Figures {
            pre_clipped_samples: 3,
            post_clipped_samples: 3,
            ..figures(60.0, 0.9)
        };
        assert!(stage.observe(&passed_on).is_empty());
    }
}
