//! End to end on loopback with the smol runtime: real UDP and TCP sockets, a server and two
//! daemons, TCP services behind the tunnel (the suite is in `burrow_tests::suite`).

burrow_tests::loopback_suite!(burrow_tests::runtimes::SmolNode);
