use eddy_engine::cel::{fields_to_cel, Expr, Vars};
use serde_json::json;
fn main() {
    let update = Expr::compile("{'on_hand': state.on_hand - event.quantity}", &["state", "event"]).unwrap();
    let when = Expr::compile("prev.on_hand >= state.low_mark && state.on_hand < state.low_mark", &["state", "prev"]).unwrap();
    let ev = json!({"quantity": 7, "order": ""}).as_object().cloned().unwrap();
    let st = json!({"on_hand": 20, "low_mark": 10}).as_object().cloned().unwrap();
    let n = 200_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut v = Vars::new();
        v.set_value("event", fields_to_cel(&ev, Some(&["quantity".to_string()])));
        v.set_value("state", fields_to_cel(&st, Some(&["on_hand".to_string()])));
        let _m = update.eval_map(&v).unwrap();
    }
    println!("update: {:?}/eval", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut v = Vars::new();
        v.set_value("prev", fields_to_cel(&st, None));
        v.set_value("state", fields_to_cel(&st, None));
        let _m = when.eval_bool(&v).unwrap();
    }
    println!("when: {:?}/eval", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let mut v = Vars::new();
        v.set_value("prev", fields_to_cel(&st, None));
        v.set_value("state", fields_to_cel(&st, None));
    }
    println!("bind only: {:?}", t.elapsed() / n);
}
