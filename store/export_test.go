package store

// DialErr is dialErr for the external tests.
var DialErr = dialErr
