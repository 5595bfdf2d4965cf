//! Test policy `bad-world`: a valid component that targets another world
//! (`viaduct-test:other/other`, exporting only `run: func()`), so the host
//! can prove it refuses a component built for something else.
#![deny(missing_docs)]

#[allow(unsafe_code, missing_docs)]
mod other {
    wit_bindgen::generate!({
        inline: "
            package viaduct-test:other;

            world other {
                export run: func();
            }
        ",
    });

    struct Other;

    impl Guest for Other {
        fn run() {}
    }

    export!(Other);
}
