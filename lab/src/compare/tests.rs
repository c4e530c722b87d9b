use super::*;

#[test]
fn progress_updates_in_place_on_a_terminal_and_by_the_second_elsewhere() {
    let mut p = Progress::new(Vec::new(), false);
    p.step("[costs] measuring");
    for t in [100, 500, 1000, 1100, 2000] {
        p.tick("[workload s]", t, 3000);
    }
    p.step("[workload s] done");
    assert_eq!(
        String::from_utf8(p.into_inner()).unwrap(),
        "[costs] measuring\n[workload s] t=0.1s/3.0s\n[workload s] t=1.0s/3.0s\n\
             [workload s] t=2.0s/3.0s\n[workload s] done\n"
    );
    let mut p = Progress::new(Vec::new(), true);
    p.tick("[w]", 100, 1000);
    p.tick("[w]", 200, 1000);
    p.step("done");
    assert_eq!(
        String::from_utf8(p.into_inner()).unwrap(),
        "\r[w] t=0.1s/1.0s\r[w] t=0.2s/1.0s\ndone\n"
    );
}
