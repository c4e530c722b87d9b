fn main() {
    let o = dks_census_bpf::Options::new(4);
    match dks_census_bpf::snapshot(&o) {
        Ok(r) => { for x in r.iter().take(400) { println!("{} {} {:?} {} {:?}", x.tid, String::from_utf8_lossy(&x.comm), x.reading, x.stack_pages, x.kthread); } println!("{}", r.len()); }
        Err(e) => println!("ERR {e}"),
    }
    match dks_census_bpf::watch_exits(&o, std::time::Duration::from_secs(2), || { std::thread::spawn(|| { for i in 0..5 { std::thread::Builder::new().name(format!("probe-{i}")).spawn(|| ()).unwrap().join().unwrap(); } }); }) {
        Ok(e) => { for x in &e.records { println!("exit {} {:?}", String::from_utf8_lossy(&x.comm), x.reading); } println!("seen {} dropped {}", e.seen, e.dropped); }
        Err(e) => println!("ERR {e}"),
    }
}
