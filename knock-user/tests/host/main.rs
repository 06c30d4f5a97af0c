//! What needs no root: the command line, the manuals and completions, and the XDP object as
//! built (which instructions it holds).

mod cli;
mod manuals;
mod object;
