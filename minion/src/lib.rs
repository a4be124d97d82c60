//! drover-minion: connects to the master, runs jobs
