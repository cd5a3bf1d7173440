//! Integration tests: a real daemon on real sockets, against a real Apache Kafka broker.
//! `scripts/test.sh` starts the broker and exports `CARTSTREAM_TEST_BROKERS`.

// Tests measure real elapsed time and build signed requests with the real clock.
#![allow(clippy::disallowed_methods)]

mod acknowledged;
mod admin_v1;
mod browser;
mod catalogue;
mod delivery;
mod documented;
mod documented_actions;
mod documented_logs;
mod documented_outage;
mod documented_redrive;
mod documented_requests;
mod documented_timers;
mod failover;
mod fake_salla;
mod fake_shopify;
mod fake_tls;
mod fake_zid;
mod hardening;
mod ingress;
mod normalize;
mod oauth;
mod outage;
mod platforms;
mod processor;
mod readers;
mod robustness;
mod security;
mod shopimind;
mod support;
mod tenants_topic;
mod tracking;
mod vectors;
