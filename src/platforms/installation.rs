//! A ShopiMind installation's lifecycle, without I/O: Install → Activate ⇄ Deactivate →
//! Uninstall, with `config_updated` in between. Each event carries the signed time it was sent
//! (`X-Shopimind-Timestamp`, seconds); events are applied in that order whatever order they
//! arrive in, a duplicate changes nothing, and an uninstall is final.

pub use crate::topics::registry::{Installation, Phase};

/// A lifecycle event, by its name in the body's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Installed,
    Activated,
    ConfigUpdated,
    Deactivated,
    Uninstalled,
}

impl Event {
    /// The event a body's `event` names (`integration.installed`, or the bare `installed`).
    pub fn named(name: &str) -> Option<Event> {
        let name = name.strip_prefix("integration.").unwrap_or(name);
        Some(match name {
            "installed" => Event::Installed,
            "activated" => Event::Activated,
            "config_updated" => Event::ConfigUpdated,
            "deactivated" => Event::Deactivated,
            "uninstalled" => Event::Uninstalled,
            _ => return None,
        })
    }
}

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The installation is now this: keep what the event carries.
    Applied(Installation),
    /// Nothing changes, and what the event carries is not kept: a duplicate, an event older
    /// than what is in force, or anything after the uninstall.
    Unchanged(&'static str),
}

/// What `event`, sent at `sent_at`, does to `current` (`None`: nothing was known of it).
pub fn apply(current: Option<Installation>, event: Event, sent_at: i64) -> Outcome {
    let Some(current) = current else {
        let phase = match event {
            Event::Installed | Event::ConfigUpdated => Phase::Installed,
            Event::Activated => Phase::Active,
            Event::Deactivated => Phase::Inactive,
            Event::Uninstalled => Phase::Uninstalled,
        };
        let config_at = matches!(event, Event::Activated | Event::ConfigUpdated).then_some(sent_at);
        return Outcome::Applied(Installation {
            phase,
            changed_at: sent_at,
            config_at,
        });
    };
    if current.phase == Phase::Uninstalled {
        return Outcome::Unchanged("the installation was uninstalled");
    }
    let moved = |phase: Phase, config_at: Option<i64>| {
        Outcome::Applied(Installation {
            phase,
            changed_at: sent_at,
            config_at,
        })
    };
    match event {
        // Final, whenever it was sent.
        Event::Uninstalled => moved(Phase::Uninstalled, None),
        Event::Installed => Outcome::Unchanged("installed already"),
        _ if sent_at < current.changed_at => Outcome::Unchanged("older than the change in force"),
        Event::ConfigUpdated if current.config_at.is_some_and(|at| sent_at <= at) => {
            Outcome::Unchanged("older than the configuration in force")
        }
        Event::ConfigUpdated => Outcome::Applied(Installation {
            config_at: Some(sent_at),
            ..current
        }),
        Event::Activated if current.phase == Phase::Active && current.changed_at == sent_at => {
            Outcome::Unchanged("a duplicate")
        }
        Event::Activated => moved(
            Phase::Active,
            Some(sent_at.max(current.config_at.unwrap_or(0))),
        ),
        Event::Deactivated if current.phase == Phase::Inactive => {
            Outcome::Unchanged("deactivated already")
        }
        Event::Deactivated => moved(Phase::Inactive, current.config_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(phase: Phase, changed_at: i64, config_at: Option<i64>) -> Installation {
        Installation {
            phase,
            changed_at,
            config_at,
        }
    }

    /// The events applied one after the other from nothing; the last outcome.
    fn run(events: &[(Event, i64)]) -> (Option<Installation>, Outcome) {
        let mut state = None;
        let mut last = Outcome::Unchanged("nothing");
        for &(event, sent_at) in events {
            last = apply(state, event, sent_at);
            if let Outcome::Applied(next) = last {
                state = Some(next);
            }
        }
        (state, last)
    }

    #[test]
    fn event_names_are_read_with_and_without_their_prefix() {
        assert_eq!(
            Event::named("integration.installed"),
            Some(Event::Installed)
        );
        assert_eq!(Event::named("config_updated"), Some(Event::ConfigUpdated));
        assert_eq!(Event::named("integration.renamed"), None);
    }

    #[test]
    fn install_activate_deactivate_activate_uninstall_goes_through_every_phase() {
        let (state, _) = run(&[
            (Event::Installed, 100),
            (Event::Activated, 110),
            (Event::Deactivated, 120),
            (Event::Activated, 130),
        ]);
        assert_eq!(state, Some(at(Phase::Active, 130, Some(130))));
        let (state, last) = run(&[
            (Event::Installed, 100),
            (Event::Activated, 110),
            (Event::Uninstalled, 140),
        ]);
        assert_eq!(state, Some(at(Phase::Uninstalled, 140, None)));
        assert!(matches!(last, Outcome::Applied(_)));
    }

    #[test]
    fn a_duplicate_changes_nothing() {
        let installed = at(Phase::Installed, 100, None);
        assert!(matches!(
            apply(Some(installed), Event::Installed, 100),
            Outcome::Unchanged(_)
        ));
        let active = at(Phase::Active, 110, Some(110));
        assert_eq!(
            apply(Some(active), Event::Activated, 110),
            Outcome::Unchanged("a duplicate")
        );
        let inactive = at(Phase::Inactive, 120, Some(110));
        assert!(matches!(
            apply(Some(inactive), Event::Deactivated, 120),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn an_older_configuration_arriving_late_does_not_replace_a_newer_one() {
        let (state, last) = run(&[
            (Event::Installed, 100),
            (Event::Activated, 110),
            (Event::ConfigUpdated, 150),
            (Event::ConfigUpdated, 130),
        ]);
        assert_eq!(
            last,
            Outcome::Unchanged("older than the configuration in force")
        );
        assert_eq!(state, Some(at(Phase::Active, 110, Some(150))));
        // In order, each is taken.
        let (state, _) = run(&[
            (Event::Activated, 110),
            (Event::ConfigUpdated, 130),
            (Event::ConfigUpdated, 150),
        ]);
        assert_eq!(state, Some(at(Phase::Active, 110, Some(150))));
    }

    #[test]
    fn a_deactivation_sent_before_the_activation_in_force_is_stale() {
        let (state, last) = run(&[
            (Event::Installed, 100),
            (Event::Activated, 120),
            (Event::Deactivated, 110),
        ]);
        assert_eq!(last, Outcome::Unchanged("older than the change in force"));
        assert_eq!(state.unwrap().phase, Phase::Active);
    }

    #[test]
    fn an_uninstall_is_final_whenever_it_was_sent_and_nothing_follows_it() {
        let (state, _) = run(&[
            (Event::Activated, 120),
            (Event::Uninstalled, 90),
            (Event::Activated, 200),
            (Event::ConfigUpdated, 210),
            (Event::Installed, 220),
        ]);
        assert_eq!(state, Some(at(Phase::Uninstalled, 90, None)));
        let after = apply(state, Event::Uninstalled, 300);
        assert_eq!(
            after,
            Outcome::Unchanged("the installation was uninstalled")
        );
    }

    #[test]
    fn an_installation_first_heard_of_mid_life_starts_where_the_event_says() {
        assert_eq!(
            apply(None, Event::Activated, 110),
            Outcome::Applied(at(Phase::Active, 110, Some(110)))
        );
        assert_eq!(
            apply(None, Event::Deactivated, 120),
            Outcome::Applied(at(Phase::Inactive, 120, None))
        );
    }
}
