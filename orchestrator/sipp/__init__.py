"""SIPp adapter: project-written scenarios, command lines, and parsing of SIPp's files."""
