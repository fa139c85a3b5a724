//! The routable view: what foca produced taken in (datagrams, timers,
//! notifications), periodic work, suspicions expired, and each member's
//! routability compared with what was last reported (with the grace that
//! keeps a member we are talking to routable while SWIM hears otherwise).

use std::time::Duration;

use exchange_runtime::{NodeId, Time};

use super::*;

impl Membership {
    /// How long a member declared down while alive is kept routable, and how
    /// recent contact must be to count (see `reconcile`).
    pub(super) fn down_grace(&self) -> Duration {
        self.settings.probe_period * 2
    }

    /// Periodic work: seeds while alone, pulls for members without metadata,
    /// the metadata refresh, a pending load update, SWIM sized to the cluster;
    /// contact older than the grace forgotten.
    pub(super) fn tick(&mut self, now: Time) {
        // Only recent contact counts (see `reconcile`): forget the rest, so
        // that addresses of members long gone do not pile up.
        let grace = self.down_grace();
        self.heard
            .retain(|_, at| now.saturating_since(*at) <= grace);
        if !self.active && !self.left && self.next_seed_at.is_some_and(|at| now >= at) {
            self.announce_to_seeds(now);
        }
        if self.active && !self.left && now >= self.next_seed_check {
            self.next_seed_check = now + self.settings.probe_period * 4;
            self.announce_to_a_missing_seed();
        }
        let missing: Vec<Identity> = self
            .alive
            .values()
            .filter(|id| !self.routable.contains_key(&id.id()) && self.pull_due(now, id.id()))
            .take(64)
            .cloned()
            .collect();
        for id in missing {
            self.pull(now, &id);
        }
        if self.active && !self.left {
            self.sync(now);
        }
        self.expire_suspects(now);
        if now >= self.next_refresh && !self.left {
            self.next_refresh = now + self.settings.meta_refresh;
            self.broadcast_meta();
        }
        if let Some(load) = self.load_pending
            && now.saturating_since(self.load_sent_at) >= self.settings.load_period
        {
            self.publish_load(now, load);
        }
        let members = self.alive.len() + 1;
        if members >= self.sized_for * 2 || members * 2 <= self.sized_for {
            self.sized_for = members;
            let configured = self.swim.set_config(self.settings.foca_config(members));
            self.stats.swim_errors += u64::from(configured.is_err());
        }
    }

    /// Declares down a member that stayed suspect for twice the suspicion
    /// timeout. foca ends a suspicion with a timer, and drops its timers when it
    /// changes identity (a rejoin after being declared down): a member suspected
    /// just before would stay suspect, and probed, forever.
    pub(super) fn expire_suspects(&mut self, now: Time) {
        let limit = self.settings.suspicion(self.alive.len() + 1) * 2;
        let mut seen = FxHashMap::default();
        let mut expired = Vec::new();
        for member in self.swim.iter_membership_state() {
            if member.state() != foca::State::Suspect {
                continue;
            }
            let since = match self.suspects.get(member.id()) {
                Some((incarnation, since)) if *incarnation == member.incarnation() => *since,
                _ => now,
            };
            if now.saturating_since(since) > limit {
                expired.push(foca::Member::new(
                    member.id().clone(),
                    member.incarnation(),
                    foca::State::Down,
                ));
            } else {
                seen.insert(member.id().clone(), (member.incarnation(), since));
            }
        }
        self.suspects = seen;
        if !expired.is_empty()
            && self
                .swim
                .apply_many(expired.into_iter(), true, &mut self.runtime)
                .is_err()
        {
            self.stats.malformed += 1;
        }
    }

    /// Takes what foca produced (datagrams, timers, notifications) and brings
    /// the routable view up to date, queueing events.
    pub(super) fn settle(&mut self, now: Time) {
        let mut touched: Vec<NodeId> = Vec::new();
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(now, to.addr, DatagramKind::Swim, &data);
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            self.notice(now, notification, &mut touched);
        }
        touched.append(&mut self.store.borrow_mut().changed);
        touched.extend(
            self.held
                .iter()
                .filter(|(_, until)| **until <= now)
                .map(|(node, _)| *node),
        );
        touched.sort_unstable();
        touched.dedup();
        for node in touched {
            self.reconcile(now, node);
        }
    }

    /// Takes in one of foca's notifications; the nodes it concerns go to
    /// `touched`, to be reconciled.
    fn notice(
        &mut self,
        now: Time,
        notification: OwnedNotification<Identity>,
        touched: &mut Vec<NodeId>,
    ) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                touched.push(id.id());
                let newer = self
                    .alive
                    .get(&id.id())
                    .is_none_or(|known| known.life <= id.life);
                if newer {
                    self.alive.insert(id.id(), id);
                }
            }
            OwnedNotification::MemberDown(id) => {
                touched.push(id.id());
                if self.alive.get(&id.id()) == Some(&id) {
                    self.alive.remove(&id.id());
                }
            }
            OwnedNotification::Rename(before, after) => {
                touched.push(before.id());
                touched.push(after.id());
                if self.alive.get(&before.id()) == Some(&before) {
                    self.alive.remove(&before.id());
                }
                if self.swim.iter_members().any(|m| *m.id() == after) {
                    self.alive.insert(after.id(), after);
                }
            }
            OwnedNotification::Active => {
                self.active = true;
                self.next_seed_at = None;
                self.seed_retry = self.settings.seed_retry_min;
            }
            OwnedNotification::Idle => {
                self.active = false;
                if !self.left {
                    self.next_seed_at = Some(now);
                }
            }
            OwnedNotification::Rejoin(id) => {
                // Declared down by the others (a false suspicion, a
                // partition): foca came back under a new life, and the
                // metadata follows it. foca starts over disconnected (it
                // says nothing of it), probing nobody until someone
                // answers: the seeds are asked again, from the shortest
                // back-off.
                self.active = false;
                self.seed_retry = self.settings.seed_retry_min;
                self.next_seed_at = Some(now);
                self.local.life = id.life;
                self.local.version += 1;
                self.store.borrow_mut().life = id.life;
                self.broadcast_meta();
            }
            OwnedNotification::Defunct => {}
        }
    }

    /// Compares what is known of `node` with what was last reported.
    pub(super) fn reconcile(&mut self, now: Time, node: NodeId) {
        let alive = self.alive.get(&node);
        let wanted = {
            let store = self.store.borrow();
            match (alive, store.metas.get(&node)) {
                (Some(id), Some(meta)) if meta.life == id.life && !meta.leaving => Some(Member {
                    addr: id.addr,
                    meta: meta.clone(),
                }),
                _ => None,
            }
        };
        if let Some(id) = alive.cloned()
            && wanted.is_none()
            && self
                .store
                .borrow()
                .metas
                .get(&node)
                .is_none_or(|m| m.life < id.life)
            && self.pull_due(now, node)
        {
            self.pull(now, &id);
        }
        match (self.routable.get(&node), wanted) {
            (None, None) => {}
            (None, Some(member)) => {
                self.stats.ups += 1;
                self.routable.insert(node, member.clone());
                self.events.push_back(Event::Up(member));
            }
            (Some(before), Some(after)) => {
                if self.held.remove(&node).is_some() {
                    self.stats.downs_averted += 1;
                }
                if *before != after {
                    self.stats.changes += 1;
                    let before = before.clone();
                    self.routable.insert(node, after.clone());
                    self.events.push_back(Event::Changed {
                        before: Box::new(before),
                        after: Box::new(after),
                    });
                }
            }
            (Some(before), None) => {
                let before = before.clone();
                self.went_down(now, node, &before);
            }
        }
    }

    /// `node`, routable as `before`, is no longer wanted: it goes down at
    /// once, or is held for a grace period.
    fn went_down(&mut self, now: Time, node: NodeId, before: &Member) {
        // After a partition heals, the side that was cut off spreads
        // "down" for every member it lost; SWIM makes such a member
        // come back under a new life, and until its metadata for that
        // life arrives it is not routable. It is alive all the while:
        // keep it routable for a grace period rather than tear down
        // its routes and connections for nothing. So too a member
        // SWIM declared down on hearsay while it is talking to us. A
        // member that is leaving, or that has been silent (a crash:
        // silent for the whole suspicion), goes at once.
        let grace = self.down_grace();
        let renewed = self
            .alive
            .get(&node)
            .is_some_and(|id| id.life > before.meta.life);
        let talking = self
            .heard
            .get(&before.addr)
            .is_some_and(|at| now.saturating_since(*at) <= grace);
        let declared = !self.alive.contains_key(&node);
        let leaving = self
            .store
            .borrow()
            .metas
            .get(&node)
            .is_some_and(|meta| meta.leaving);
        let hold = !leaving && !self.left && (renewed || (declared && talking));
        if hold {
            let held = &mut self.stats.downs_held;
            let until = *self.held.entry(node).or_insert_with(|| {
                *held += 1;
                now + grace
            });
            if until > now {
                return;
            }
        }
        self.held.remove(&node);
        self.stats.downs += 1;
        let member = self.routable.remove(&node).expect("present");
        self.events.push_back(Event::Down(member));
    }
}
