//! The SignalR hub (being written).
