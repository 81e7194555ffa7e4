// Charts and stacks are embedded in the binary (include_dir): rebuild when
// any of their files changes, including files added or removed.
fn main() {
    println!("cargo:rerun-if-changed=charts");
    println!("cargo:rerun-if-changed=stacks");
}
