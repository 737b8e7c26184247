/* The body of a DLL made only of forwarders (synch.def). */
