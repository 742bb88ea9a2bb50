//! `#[percore::main]` and `#[percore::test]`: run an `async fn` on a
//! percore runtime built for it.
//!
//! Arguments (both optional): `workers = N` (default: the usable cores for
//! `main`, 1 for `test`) and `driver = "auto" | "io_uring" | "epoll"`
//! (default `auto`). The body runs with `Runtime::block_on_local`: it is
//! built and run on worker 0, so it may hold `!Send` values across awaits,
//! but its output must be `Send` (return `Result<(), Box<dyn Error + Send +
//! Sync>>` rather than `Box<dyn Error>`).

#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, Token};

struct Args {
    workers: Option<proc_macro2::TokenStream>,
    driver: Option<proc_macro2::TokenStream>,
}

fn parse_args(attr: TokenStream) -> syn::Result<Args> {
    let parser = Punctuated::<MetaNameValue, Token![,]>::parse_terminated;
    let list = parser.parse(attr)?;
    let mut args = Args {
        workers: None,
        driver: None,
    };
    for nv in list {
        let name = nv
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match name.as_str() {
            "workers" => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(n), ..
                }) => {
                    let v: usize = n.base10_parse()?;
                    if v == 0 {
                        return Err(syn::Error::new_spanned(n, "workers must be at least 1"));
                    }
                    args.workers = Some(quote!(#v));
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "workers takes an integer: workers = 2",
                    ))
                }
            },
            "driver" => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => {
                    let d = match s.value().as_str() {
                        "auto" => quote!(::percore::Driver::Auto),
                        "io_uring" | "uring" => quote!(::percore::Driver::IoUring),
                        "epoll" => quote!(::percore::Driver::Epoll),
                        _ => {
                            return Err(syn::Error::new_spanned(
                                s,
                                "driver is \"auto\", \"io_uring\" or \"epoll\"",
                            ))
                        }
                    };
                    args.driver = Some(d);
                }
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        "driver takes a string: driver = \"epoll\"",
                    ))
                }
            },
            _ => {
                return Err(syn::Error::new_spanned(
                    &nv.path,
                    "unknown argument: use workers = N, driver = \"...\"",
                ))
            }
        }
    }
    Ok(args)
}

fn expand(attr: TokenStream, item: TokenStream, test: bool) -> TokenStream {
    let args = match parse_args(attr) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let mut f = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => return e.to_compile_error().into(),
    };
    if f.sig.asyncness.take().is_none() {
        return syn::Error::new_spanned(f.sig.fn_token, "the function must be `async fn`")
            .to_compile_error()
            .into();
    }
    let workers = match (args.workers, test) {
        (Some(w), _) => quote!(builder.workers(#w);),
        (None, true) => quote!(builder.workers(1);),
        (None, false) => quote!(),
    };
    let driver = args
        .driver
        .map(|d| quote!(builder.driver(#d);))
        .unwrap_or_default();
    let body = &f.block;
    let new_body: syn::Block = syn::parse_quote!({
        let mut builder = ::percore::Runtime::builder();
        #workers
        #driver
        let rt = builder
            .build()
            .expect("percore: could not start the runtime");
        rt.block_on_local(move || async move #body)
    });
    *f.block = new_body;
    let test_attr = if test {
        quote!(#[::core::prelude::v1::test])
    } else {
        quote!()
    };
    quote!(#test_attr #f).into()
}

/// Runs `async fn main` on a percore runtime (see the crate docs).
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, false)
}

/// An `async fn` test on a percore runtime with 1 worker unless
/// `workers = N` (see the crate docs).
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, true)
}
