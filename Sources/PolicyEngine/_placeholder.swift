public enum _PlaceholderPolicyEngine {}
