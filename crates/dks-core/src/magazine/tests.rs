use super::*;
use crate::emulated::{EmulatedConfig, EmulatedPlatform, FailurePattern};

fn setup(max_stack_bytes: u64, frames: u32) -> (Magazine, EmulatedPlatform) {
    let layout = StackLayout::try_with_default_base(max_stack_bytes, 4).unwrap();
    let platform = EmulatedPlatform::new(EmulatedConfig {
        frames,
        ..EmulatedConfig::default()
    });
    (Magazine::new(CpuId::new(0), &layout), platform)
}

#[test]
fn capacity_is_max_pages_minus_one() {
    for (bytes, capacity) in [(0x4000, 3), (0x8000, 7), (0x1_0000, 15)] {
        let (magazine, _) = setup(bytes, 1);
        assert_eq!(magazine.capacity(), capacity);
        assert!(magazine.is_empty());
    }
}

#[test]
fn take_never_allocates_and_refill_fills_up() {
    let (mut magazine, mut platform) = setup(0x4000, 16);
    assert_eq!(magazine.take(), None);
    assert_eq!(platform.stats().allocations, 0);
    let refill = magazine.refill(&mut platform, Urgency::Atomic);
    assert_eq!(
        refill,
        Refill {
            added: 3,
            len: 3,
            capacity: 3
        }
    );
    assert!(refill.is_complete() && magazine.is_full());
    assert_eq!(magazine.frames().count(), 3);
    // Full: nothing to do.
    assert_eq!(magazine.refill(&mut platform, Urgency::Atomic).added, 0);
    let frame = magazine.take().unwrap();
    assert_eq!(magazine.len(), 2);
    assert_eq!(magazine.put(frame), Ok(()));
    let extra = platform.alloc_frame(Urgency::Normal).unwrap();
    let extra = magazine.put(extra).unwrap_err();
    platform.free_frame(extra);
    assert_eq!(magazine.drain(&mut platform), 3);
    assert!(magazine.is_empty());
    assert_eq!(platform.free_frames(), 16);
}

#[test]
fn refill_reports_how_far_it_got() {
    let (mut magazine, mut platform) = setup(0x1_0000, 5);
    let refill = magazine.refill(&mut platform, Urgency::Atomic);
    assert_eq!(
        refill,
        Refill {
            added: 5,
            len: 5,
            capacity: 15
        }
    );
    assert!(!refill.is_complete());

    let (mut magazine, mut platform) = setup(0x4000, 64);
    platform.set_failures(FailurePattern::AllAtomic);
    let refill = magazine.refill(&mut platform, Urgency::Atomic);
    assert_eq!(
        refill,
        Refill {
            added: 0,
            len: 0,
            capacity: 3
        }
    );
    let refill = magazine.refill(&mut platform, Urgency::Normal);
    assert!(refill.is_complete());
    assert_eq!(magazine.drain(&mut platform), 3);
}
