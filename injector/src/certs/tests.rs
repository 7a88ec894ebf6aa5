use super::*;

fn names() -> Vec<String> {
    vec![
        "streamgate-injector.streamgate.svc".to_owned(),
        "streamgate-injector.streamgate.svc.cluster.local".to_owned(),
    ]
}

fn years(n: f64) -> Duration {
    Duration::from_secs_f64(n * 365.0 * 24.0 * 3600.0)
}

fn fresh(now: SystemTime) -> Material {
    plan(None, &names(), now)
        .expect("issued")
        .expect("new material")
}

#[test]
fn nothing_stored_issues_a_ca_and_a_leaf_for_the_names() {
    let now = SystemTime::now();
    let m = fresh(now);
    assert_eq!(m.bundle, m.ca_cert);
    let leaf = facts(&m.cert).expect("a certificate");
    assert_eq!(leaf.dns_names, names());
    assert!(remaining(&leaf, now) > years(0.99));
    assert!(remaining(&facts(&m.ca_cert).expect("ca"), now) > years(9.9));
}

#[test]
fn good_material_is_kept() {
    let now = SystemTime::now();
    let m = fresh(now);
    assert_eq!(
        plan(Some(&m), &names(), now + years(0.5)).expect("planned"),
        None
    );
}

#[test]
fn the_leaf_is_renewed_near_its_end_or_for_new_names_with_the_same_ca() {
    let now = SystemTime::now();
    let m = fresh(now);
    let later = plan(Some(&m), &names(), now + years(0.7))
        .expect("planned")
        .expect("renewed");
    assert_eq!((&later.ca_cert, &later.bundle), (&m.ca_cert, &m.bundle));
    assert_ne!(later.cert, m.cert);

    let other = vec!["other.streamgate.svc".to_owned()];
    let renamed = plan(Some(&m), &other, now)
        .expect("planned")
        .expect("renewed");
    assert_eq!(renamed.ca_cert, m.ca_cert);
    assert_eq!(facts(&renamed.cert).expect("leaf").dns_names, other);
}

#[test]
fn a_ca_near_its_end_is_replaced_and_the_old_one_stays_trusted() {
    let now = SystemTime::now();
    let m = fresh(now);
    let later = plan(Some(&m), &names(), now + years(9.5))
        .expect("planned")
        .expect("new CA");
    assert_ne!(later.ca_cert, m.ca_cert);
    assert_eq!(later.bundle, format!("{}{}", later.ca_cert, m.ca_cert));
    // Once the old CA has expired it leaves the bundle.
    let expired = plan(Some(&m), &names(), now + years(10.5))
        .expect("planned")
        .expect("new CA");
    assert_eq!(expired.bundle, expired.ca_cert);
}

#[test]
fn unreadable_material_is_replaced() {
    let now = SystemTime::now();
    let m = fresh(now);
    let broken_ca = Material {
        ca_key: "not a key".to_owned(),
        ..m.clone()
    };
    let replaced = plan(Some(&broken_ca), &names(), now)
        .expect("planned")
        .expect("new CA");
    assert_ne!(replaced.ca_cert, m.ca_cert);
    let broken_leaf = Material {
        cert: "garbage".to_owned(),
        ..m.clone()
    };
    let renewed = plan(Some(&broken_leaf), &names(), now)
        .expect("planned")
        .expect("new leaf");
    assert_eq!(renewed.ca_cert, m.ca_cert);
}
